/* Unit tests for parking on a topic (httpd.h ts_httpd_park_on and
 * ts_httpd_wake_topic) and for the answer a parked request gets when the
 * server stops: a real server on a loopback port, plain HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "ts.h"

/* GET /TOPIC/SEEN parks on TOPIC having seen SEEN; handed over again it
 * answers "woken TOPIC" or "expired TOPIC". */
static void handler(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    (void)ud;
    char topic[64] = "";
    unsigned long long seen = 0;
    if (sscanf(req->path, "/%63[^/]/%llu", topic, &seen) != 2) {
        ts_httpd_error(resp, 400, "want /TOPIC/SEEN");
        return;
    }
    if (!req->park_until_ms) {
        ts_httpd_park_on(resp, ts_now_mono_ms() + 30000, 0, topic, seen);
        return;
    }
    resp->status = 200;
    ts_buf_printf(&resp->body, "%s %s", req->park_expired ? "expired" : "woken", topic);
}

static struct ts_httpd *start(void)
{
    struct ts_httpd_opts o = {.listen = "127.0.0.1:0", .workers = 2};
    struct ts_httpd *s = NULL;
    char err[256];
    assert_int_equal(ts_httpd_start(&o, handler, NULL, &s, err, sizeof err), TS_OK);
    return s;
}

static int ask(struct ts_httpd *s, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ts_httpd_port(s))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* The answer's body within 5 s ("" when none came). */
static void answer(int fd, char *out, size_t outsz)
{
    size_t got = 0;
    out[0] = '\0';
    int64_t end = ts_now_mono_ms() + 5000;
    while (got + 1 < outsz) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = end - ts_now_mono_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(fd, out + got, outsz - got - 1);
        if (n <= 0)
            break;
        got += (size_t)n;
        out[got] = '\0';
        if (strstr(out, "\r\n\r\n") && (strstr(out, "woken") || strstr(out, "expired")))
            break;
    }
    char *body = strstr(out, "\r\n\r\n");
    if (body)
        memmove(out, body + 4, strlen(body + 4) + 1);
    else
        out[0] = '\0';
}

static void wait_parked(struct ts_httpd *s, long n)
{
    int64_t end = ts_now_mono_ms() + 5000;
    struct ts_httpd_stats st;
    do {
        ts_httpd_stats(s, &st);
        if (st.parked == n)
            return;
        usleep(5000); /* polling with a deadline */
    } while (ts_now_mono_ms() < end);
    fail_msg("%ld parked, want %ld", st.parked, n);
}

static void test_wake_only_the_topic(void **state)
{
    (void)state;
    struct ts_httpd *s = start();
    int a = ask(s, "/A/5"), b = ask(s, "/B/5");
    wait_parked(s, 2);
    ts_httpd_wake_topic(s, "A", 5); /* not past what A saw: nothing */
    ts_httpd_wake_topic(s, "A", 6);
    char buf[512];
    answer(a, buf, sizeof buf);
    assert_string_equal(buf, "woken A");
    struct ts_httpd_stats st;
    ts_httpd_stats(s, &st);
    assert_int_equal(st.woken, 1); /* B was never handed over */
    wait_parked(s, 1);
    ts_httpd_wake_topic(s, "B", 6);
    answer(b, buf, sizeof buf);
    assert_string_equal(buf, "woken B");
    close(a);
    close(b);
    ts_httpd_stop(s);
}

/* A change announced before the request parks (committed while its handler
 * read) still wakes it: the server remembers the topic's position. */
static void test_no_lost_wake(void **state)
{
    (void)state;
    struct ts_httpd *s = start();
    ts_httpd_wake_topic(s, "C", 10);
    int stale = ask(s, "/C/9");
    char buf[512];
    answer(stale, buf, sizeof buf);
    assert_string_equal(buf, "woken C");
    int current = ask(s, "/C/10");
    wait_parked(s, 1); /* saw 10: stays parked */
    ts_httpd_wake_topic(s, "C", 11);
    answer(current, buf, sizeof buf);
    assert_string_equal(buf, "woken C");
    close(stale);
    close(current);
    ts_httpd_stop(s);
}

/* Stopping answers the parked request (as at its deadline), no bare close. */
static void test_stop_answers_parked(void **state)
{
    (void)state;
    struct ts_httpd *s = start();
    int fd = ask(s, "/D/1");
    wait_parked(s, 1);
    ts_httpd_stop(s);
    char buf[512];
    answer(fd, buf, sizeof buf);
    assert_string_equal(buf, "expired D");
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wake_only_the_topic),
        cmocka_unit_test(test_no_lost_wake),
        cmocka_unit_test(test_stop_answers_parked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
