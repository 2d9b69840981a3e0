// The peer of bench/purchase_backlog.py: reads the backlog's events (one JSON
// event per line, as the tillside outbox holds them) and sends them with
// Segment's Node SDK (@segment/analytics-node) to the same local endpoint.
//   node send.js EVENTS.jsonl https://localhost:PORT [flushAt]
// NODE_EXTRA_CA_CERTS names the bench CA. Prints one JSON line when done.
'use strict'
const fs = require('fs')
const readline = require('readline')
const { Analytics } = require('@segment/analytics-node')

async function main () {
  const [file, host, flushAt] = process.argv.slice(2)
  const analytics = new Analytics({
    writeKey: 'bench-write-key',
    host,
    path: '/v1/batch',
    // The SDK's default is 15 events per request; the largest it allows keeps
    // requests under its own 480 KB cap, as tillside's 475 KB.
    maxEventsInBatch: Number(flushAt || 15),
    flushInterval: 1000
  })
  let errors = 0
  analytics.on('error', () => { errors++ })
  const rl = readline.createInterface({ input: fs.createReadStream(file) })
  let n = 0
  for await (const line of rl) {
    if (!line) continue
    const e = JSON.parse(line)
    analytics.track({
      messageId: e.messageId,
      anonymousId: e.anonymousId,
      event: e.event,
      properties: e.properties,
      context: e.context,
      timestamp: e.originalTimestamp
    })
    n++
  }
  await analytics.closeAndFlush({ timeout: 600000 })
  console.log(JSON.stringify({ tracked: n, errors }))
}

main().catch((e) => { console.error(e); process.exit(1) })
