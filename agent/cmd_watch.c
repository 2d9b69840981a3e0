/*
 * `tillside watch`: the associate's card live in a text terminal. Reads the
 * agent's SSE stream over loopback, redraws the whole screen on every event
 * and on resize (SIGWINCH), and reconnects when the agent restarts.
 */
#include "agent.h"
#include "cmd.h"
#include "render.h"
#include "sse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t g_resized, g_stop;

static void on_winch(int sig)
{
    (void)sig;
    g_resized = 1;
}

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

struct watch {
    const struct ts_agent_config *cfg;
    bool tty;
    json_t *session; /* last customer session, NULL = idle */
    const char *link;
    const char *note; /* "reconnecting…" etc. */
    char flash[200];  /* "purchase recorded", until the next card */
};

/* Printable ASCII of s into out (the CDP's, the hub's and the POS's texts). */
static const char *safe_text(const char *s, char *out, size_t outsz)
{
    size_t n = 0;
    for (size_t i = 0; s && s[i] && n + 1 < outsz; i++)
        if (s[i] >= 0x20 && s[i] < 0x7f)
            out[n++] = s[i];
    out[n] = '\0';
    return out;
}

/* The card's open offers (PROTOCOL.md "Offers"); one whose expires_at has
 * passed is left out, as on the page. */
static void draw_offers(const struct watch *w)
{
    json_t *offers = json_object_get(json_object_get(w->session, "card"), "offers");
    int64_t now = ts_now_wall_ms();
    size_t i, shown = 0;
    json_t *o;
    json_array_foreach(offers, i, o)
    {
        const char *code = json_string_value(json_object_get(o, "code"));
        const char *exp = json_string_value(json_object_get(o, "expires_at"));
        int64_t until = 0;
        if (!code || (exp && (ts_iso8601_parse(exp, &until) != TS_OK || until <= now)))
            continue;
        char c[72], d[160], e[16];
        printf("%s  %s  %s%s%s\n", shown++ ? "      " : "Offers", safe_text(code, c, sizeof c),
               safe_text(json_string_value(json_object_get(o, "description")), d, sizeof d),
               exp ? "  until " : "", exp ? safe_text(exp, e, 11) : "");
    }
}

static void draw(struct watch *w)
{
    struct ts_render r = {.f = stdout, .width = 0, .color = w->tty};
    if (w->tty) {
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
            r.width = ws.ws_col;
        fputs("\033[H\033[2J", stdout);
    } else {
        fputs("----\n", stdout);
    }
    if (w->note)
        printf("[%s]\n", w->note);
    else if (w->link && strcmp(w->link, "offline") == 0)
        printf("[offline: showing cached data]\n");
    if (w->flash[0])
        printf("%s\n", w->flash);
    if (w->session) {
        ts_render_session(&r, w->session);
        draw_offers(w);
    } else
        printf("Scan a loyalty card\n");
    fflush(stdout);
}

/* The line a return or a consent leaves on the screen (api_returns.c,
 * api_consent.c). */
static void till_flash(struct watch *w, const char *type, json_t *data)
{
    char a[48], b[48];
    if (strcmp(type, "return") == 0) {
        safe_text(json_string_value(json_object_get(data, "return_id")), a, sizeof a);
        safe_text(json_string_value(json_object_get(data, "original_receipt")), b, sizeof b);
        snprintf(w->flash, sizeof w->flash, "Return recorded · %s (receipt %s)", a, b);
        return;
    }
    json_t *c = json_object_get(data, "choices");
    json_t *p = json_object_get(c, "personalization_consent");
    snprintf(
        w->flash, sizeof w->flash, "Consent recorded · personalisation %s%s%s",
        json_is_true(p)    ? "on"
        : json_is_false(p) ? "off"
                           : "unchanged",
        json_is_boolean(json_object_get(c, "email_consent"))
            ? (json_is_true(json_object_get(c, "email_consent")) ? " · e-mail on" : " · e-mail off")
            : "",
        json_is_boolean(json_object_get(c, "sms_consent"))
            ? (json_is_true(json_object_get(c, "sms_consent")) ? " · SMS on" : " · SMS off")
            : "");
}

static void on_event(void *ud, const struct ts_sse_event *ev)
{
    struct watch *w = ud;
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (strcmp(ev->type, "customer") == 0 && json_is_object(data)) {
        json_decref(w->session);
        w->session = json_incref(data);
        w->flash[0] = '\0';
        const char *l = json_string_value(json_object_get(data, "link"));
        if (l)
            w->link = strcmp(l, "online") == 0 ? "online" : "offline";
    } else if (strcmp(ev->type, "clear") == 0) {
        json_decref(w->session);
        w->session = NULL;
    } else if (strcmp(ev->type, "purchase") == 0) {
        const char *r = json_string_value(json_object_get(data, "receipt"));
        /* The receipt number is the POS's own text: printable ASCII only. */
        char safe[48] = "";
        for (size_t i = 0, n = 0; r && r[i] && n + 1 < sizeof safe; i++)
            if (r[i] >= 0x20 && r[i] < 0x7f)
                safe[n++] = r[i], safe[n] = '\0';
        snprintf(w->flash, sizeof w->flash, "Purchase recorded%s%s", safe[0] ? " · " : "", safe);
    } else if (strcmp(ev->type, "offer") == 0) {
        char c[72], m[200];
        const char *code = json_string_value(json_object_get(data, "code"));
        if (json_is_true(json_object_get(data, "redeemed"))) {
            snprintf(w->flash, sizeof w->flash, "Offer %s redeemed", safe_text(code, c, sizeof c));
            json_t *offers = json_object_get(json_object_get(w->session, "card"), "offers");
            for (size_t i = json_array_size(offers); code && i-- > 0;)
                if (json_equal(json_object_get(json_array_get(offers, i), "code"),
                               json_object_get(data, "code")))
                    json_array_remove(offers, i);
        } else {
            snprintf(w->flash, sizeof w->flash, "%s",
                     safe_text(json_string_value(json_object_get(data, "message")), m, sizeof m));
        }
    } else if ((strcmp(ev->type, "return") == 0 || strcmp(ev->type, "consent") == 0) &&
               json_is_object(data)) {
        till_flash(w, ev->type, data);
    } else if (strcmp(ev->type, "link") == 0) {
        const char *l = json_string_value(json_object_get(data, "link"));
        w->link = l && strcmp(l, "online") == 0 ? "online" : "offline";
    } else {
        json_decref(data);
        return; /* scan events carry nothing new for the screen */
    }
    json_decref(data);
    draw(w);
}

/* Connects to the local API and streams events until the connection ends or
 * we are asked to stop. Returns true if it got as far as the stream. */
static bool stream_once(struct watch *w)
{
    const struct ts_agent_config *cfg = w->cfg;
    bool v6 = strchr(cfg->api_host, ':') != NULL;
    struct sockaddr_storage ss = {0};
    socklen_t slen;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cfg->api_port);
        inet_pton(AF_INET6, cfg->api_host, &a->sin6_addr);
        slen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cfg->api_port);
        inet_pton(AF_INET, cfg->api_host, &a->sin_addr);
        slen = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, slen) != 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    char req[256];
    /* HTTP/1.0: the stream is then sent raw, without chunked framing. */
    int n = snprintf(req, sizeof req,
                     "GET /api/v1/events HTTP/1.0\r\nHost: %s%s%s:%d\r\n"
                     "Accept: text/event-stream\r\n\r\n",
                     v6 ? "[" : "", cfg->api_host, v6 ? "]" : "", cfg->api_port);
    bool streamed = false;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto out;
    struct ts_sse sse;
    ts_sse_init(&sse);
    ts_buf head = {0};
    bool in_body = false;
    while (!g_stop) {
        if (g_resized) {
            g_resized = 0;
            draw(w);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 500);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        char buf[4096];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0)
            break;
        if (in_body) {
            ts_sse_feed(&sse, buf, (size_t)got, on_event, w);
            continue;
        }
        ts_buf_append(&head, buf, (size_t)got);
        char *end = head.data ? strstr(head.data, "\r\n\r\n") : NULL;
        if (!end) {
            if (head.len > 16384)
                break;
            continue;
        }
        if (strncmp(head.data, "HTTP/1.", 7) != 0 || strncmp(head.data + 8, " 200", 4) != 0) {
            fprintf(stderr, "tillside watch: the agent refused the event stream: %.60s\n",
                    head.data);
            g_stop = 1;
            break;
        }
        in_body = streamed = true;
        w->note = NULL;
        /* The agent sends the current card first if there is one; what we
         * showed before the reconnect may be gone (agent restarted). */
        json_decref(w->session);
        w->session = NULL;
        draw(w);
        size_t body_off = (size_t)(end + 4 - head.data);
        ts_sse_feed(&sse, head.data + body_off, head.len - body_off, on_event, w);
    }
    ts_buf_free(&head);
    ts_sse_free(&sse);
out:
    close(fd);
    return streamed;
}

int ts_cmd_watch(const struct ts_agent_config *cfg)
{
    struct watch w = {.cfg = cfg, .tty = isatty(STDOUT_FILENO) == 1, .link = "online"};
    struct sigaction sa = {0};
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, NULL);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (w.tty)
        fputs("\033[?25l", stdout); /* hide the cursor while drawing */
    w.note = "connecting to the agent…";
    draw(&w);
    while (!g_stop) {
        if (!stream_once(&w) && !g_stop) {
            w.note = "the agent is not answering: reconnecting…";
            draw(&w);
        } else if (!g_stop) {
            w.note = "reconnecting…";
            draw(&w);
        }
        for (int i = 0; i < 10 && !g_stop; i++)
            usleep(100000);
    }
    if (w.tty)
        fputs("\033[?25h\n", stdout);
    json_decref(w.session);
    return 0;
}
