/* test_cluster.c - cluster.c's lookups against a real redis-server, in
 * process: a whole instance (app_create) whose loop the test steps, and a
 * redis-server of the case's own on a free port. The test seeds and reads
 * Redis with hiredis' blocking context (the test's thread is not a control
 * loop). check forks every case: each has its own instance and Redis,
 * which dies with the case (PR_SET_PDEATHSIG). Without redis-server on
 * PATH the cases pass without running (printed). */
#include "sofia_types.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <sofia-sip/su_log.h>

#include "app.h"
#include "cluster.h"
#include "log.h"
#include "unit_helpers.h"

static struct {
    struct app *app;
    int redis_port;
    pid_t redis;
    /* what the callbacks got */
    int node_calls, node_result;
    char node_api[64];
    int list_calls, list_ok, list_n;
    char list_first[512];
} P;

#define run_until(expr, ms) unit_run_until(P.app->root, expr, ms)

static bool have_redis(void) { return system("command -v redis-server >/dev/null 2>&1") == 0; }

/* A blocking connection of the test's own; NULL if Redis does not answer. */
static redisContext *cli(void)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", P.redis_port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", P.redis_port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        freopen("/dev/null", "w", stdout);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    P.redis = pid;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        redisContext *c = cli();
        redisReply *r = c ? redisCommand(c, "PING") : NULL;
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
        if (ok)
            return;
        ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0, "redis-server exited");
        ck_assert_msg(unit_elapsed_ms(&t0) < 10000, "redis-server not answering on %d", P.redis_port);
        usleep(20000); /* polling for the condition, not a sleep in its place */
    }
}

static void redis_kill(void)
{
    if (P.redis > 0) {
        kill(P.redis, SIGKILL);
        waitpid(P.redis, NULL, 0);
    }
    P.redis = 0;
}

/* Run a command on the test's connection; the reply's integer, or -1. */
static long long cmd(const char *fmt, ...)
{
    redisContext *c = cli();
    ck_assert_msg(c != NULL, "no test connection to Redis");
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_msg(r != NULL, "redis: %s", c->errstr);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void setup(void)
{
    memset(&P, 0, sizeof P);
    log_set_level(getenv("TEST_CLUSTER_DEBUG") ? LOG_DEBUG : LOG_ERROR);
    if (!have_redis())
        return;
    su_init();
    su_log_set_level(NULL, 0);
    P.redis_port = unit_free_port();
    redis_start();
    int sip = unit_free_port();
    char text[2048];
    snprintf(text, sizeof text,
             "node = \"t\";\n"
             "sip = { listen = \"sip:127.0.0.1:%d\"; };\n"
             "api = { listen = \"127.0.0.1:8081\"; tokens = [ \"t\" ]; };\n"
             "media = { mode = \"passthrough\"; address = \"127.0.0.1\"; };\n"
             "trunks = ( { name = \"carrier\"; sources = [ \"127.0.0.0/8\" ]; } );\n"
             "rooms = { domain = \"rooms.test\"; list = ( { name = \"room-a\"; uri = "
             "\"sip:room-a@127.0.0.1:9\"; } ); };\n"
             "webhooks = { url = \"\"; secret = \"\"; };\n"
             "cluster = { redis = \"127.0.0.1:%d\"; lease = 3;\n"
             "  peers = ( { node = \"edge-2\"; api = \"127.0.0.3:8080\"; } ); };\n",
             sip, P.redis_port);
    char err[512];
    struct config *cfg = unit_load_config(text, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "config: %s", err);
    P.app = app_create(cfg, err, sizeof err);
    ck_assert_msg(P.app != NULL, "app_create: %s", err);
    ck_assert_ptr_nonnull(P.app->cluster);
    run_until(cluster_redis_up(P.app), 5000);
}

static void teardown(void)
{
    if (P.app)
        app_destroy(P.app);
    P.app = NULL;
    redis_kill();
    if (have_redis())
        su_deinit();
}

#define NEED_REDIS()                                                                           \
    do {                                                                                       \
        if (!P.app) {                                                                          \
            printf("test_cluster: redis-server not found, case not run\n");                    \
            return;                                                                            \
        }                                                                                      \
    } while (0)

static void on_node(void *arg, int result, const char *api)
{
    P.node_calls++;
    P.node_result = result;
    snprintf(P.node_api, sizeof P.node_api, "%s", api ? api : "(null)");
}

static void on_list(void *arg, int ok, cJSON *sessions)
{
    P.list_calls++;
    P.list_ok = ok;
    P.list_n = sessions ? cJSON_GetArraySize(sessions) : -1;
    P.list_first[0] = '\0';
    if (sessions && cJSON_GetArraySize(sessions) > 0) {
        char *s = cJSON_PrintUnformatted(cJSON_GetArrayItem(sessions, 0));
        snprintf(P.list_first, sizeof P.list_first, "%s", s);
        free(s);
    }
}

START_TEST(node_api_lease_or_gone)
{
    NEED_REDIS();
    /* registered at connect: node:t with our API */
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, NULL), 0);
    ck_assert_int_eq(P.node_calls, 0); /* never from inside the call */
    run_until(P.node_calls == 1, 3000);
    ck_assert_int_eq(P.node_result, 1);
    ck_assert_str_eq(P.node_api, "127.0.0.1:8081");
    ck_assert_int_gt(cmd("TTL node:t"), 0);
    ck_assert_int_le(cmd("TTL node:t"), 3);

    ck_assert_int_eq(cluster_node_api(P.app, "ghost", on_node, NULL), 0);
    run_until(P.node_calls == 2, 3000);
    ck_assert_int_eq(P.node_result, 0);
    ck_assert_str_eq(P.node_api, "(null)");

    /* draining is written at once */
    cluster_set_state(P.app, "draining");
    redisContext *c = cli();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        su_root_step(P.app->root, 5);
        redisReply *r = redisCommand(c, "HGET node:t state");
        bool ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "draining") == 0;
        freeReplyObject(r);
        if (ok)
            break;
        ck_assert_msg(unit_elapsed_ms(&t0) < 3000, "node:t state not draining");
    }
    redisFree(c);
}
END_TEST

START_TEST(list_reads_every_node)
{
    NEED_REDIS();
    /* another live node's session (its lease long: not reaped meanwhile) */
    cmd("HSET node:x api 127.0.0.9:1 sip sip:127.0.0.9 state active calls 1");
    cmd("EXPIRE node:x 300");
    cmd("SADD nodes x");
    cmd("SADD nodesess:x x-1");
    cmd("HSET sess:x-1 node x room room-b from sip:+1555@carrier started 1700000000 type dialin "
        "state connected");
    /* a listed id whose hash is gone: left out */
    cmd("SADD nodesess:x x-2");
    ck_assert_int_eq(cluster_list_sessions(P.app, on_list, NULL), 0);
    ck_assert_int_eq(P.list_calls, 0);
    run_until(P.list_calls == 1, 3000);
    ck_assert_int_eq(P.list_ok, 1);
    ck_assert_int_eq(P.list_n, 1);
    cJSON *j = cJSON_Parse(P.list_first);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "sessionId")->valuestring, "x-1");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "node")->valuestring, "x");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "room")->valuestring, "room-b");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "caller")->valuestring, "sip:+1555@carrier");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "state")->valuestring, "connected");
    ck_assert(cJSON_GetObjectItem(j, "startedAt")->valuedouble == 1700000000.0);
    cJSON_Delete(j);
}
END_TEST

START_TEST(redis_gone_falls_back_to_peers)
{
    NEED_REDIS();
    redis_kill();
    run_until(!cluster_redis_up(P.app), 3000);
    ck_assert_int_eq(cluster_node_api(P.app, "edge-2", on_node, NULL), 0);
    ck_assert_int_eq(P.node_calls, 0);
    run_until(P.node_calls == 1, 1000);
    ck_assert_int_eq(P.node_result, 1);
    ck_assert_str_eq(P.node_api, "127.0.0.3:8080");
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, NULL), 0);
    run_until(P.node_calls == 2, 1000);
    ck_assert_int_eq(P.node_result, -1);
    ck_assert_int_eq(cluster_list_sessions(P.app, on_list, NULL), 0);
    ck_assert_int_eq(P.list_calls, 0);
    run_until(P.list_calls == 1, 1000);
    ck_assert_int_eq(P.list_ok, 0);
    ck_assert_int_eq(P.list_n, -1);
    /* and back: a Redis on the same port is found again */
    redis_start();
    run_until(cluster_redis_up(P.app), 8000);
    run_until(cmd("EXISTS node:t") == 1, 3000);
}
END_TEST

START_TEST(hung_redis_times_out)
{
    NEED_REDIS();
    kill(P.redis, SIGSTOP);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, NULL), 0);
    run_until(P.node_calls == 1, 3000);
    long took = unit_elapsed_ms(&t0);
    ck_assert_int_eq(P.node_result, -1);
    /* bounded by the oldest command in flight: 1 s at most (a lease
     * refresh sent just before may take it down sooner) */
    ck_assert_msg(took < 1500, "answered after %ld ms, not within the 1 s bound", took);
    ck_assert(!cluster_redis_up(P.app));
    kill(P.redis, SIGCONT);
    run_until(cluster_redis_up(P.app), 8000);
}
END_TEST

START_TEST(lookups_in_flight_at_stop_or_cancelled_never_call_back)
{
    NEED_REDIS();
    int token = 0;
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, &token), 0);
    ck_assert_int_eq(cluster_list_sessions(P.app, on_list, &token), 0);
    ck_assert_int_eq(cluster_cancel(P.app, &token), 2);
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, NULL), 0);
    run_until(P.node_calls == 1, 3000); /* the one not cancelled */
    ck_assert_int_eq(P.list_calls, 0);
    /* sent, not answered yet, when the instance goes */
    ck_assert_int_eq(cluster_node_api(P.app, "t", on_node, NULL), 0);
    ck_assert_int_eq(cluster_list_sessions(P.app, on_list, NULL), 0);
    app_destroy(P.app);
    P.app = NULL;
    ck_assert_int_eq(P.node_calls, 1);
    ck_assert_int_eq(P.list_calls, 0);
    /* the clean stop unregistered the node */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (cmd("EXISTS node:t") != 0 || cmd("SISMEMBER nodes t") != 0) {
        ck_assert_msg(unit_elapsed_ms(&t0) < 3000, "node t still registered after its stop");
        usleep(10000);
    }
}
END_TEST

START_TEST(lost_dialout_node_reaped)
{
    NEED_REDIS();
    /* node y: listed, its lease gone, one dial-out session */
    cmd("SADD nodes y");
    cmd("SADD nodesess:y y-1");
    cmd("SADD room:room-c y-1");
    cmd("HSET sess:y-1 node y room room-c from sip:+1666@carrier started 1700000000 type dialout "
        "state connected");
    run_until(cluster_sessions_reaped(P.app) == 1, 5000);
    /* the removals were sent with the last answer: wait for them */
    run_until(cmd("EXISTS sess:y-1") == 0 && cmd("EXISTS nodesess:y") == 0 &&
                  cmd("SISMEMBER nodes y") == 0,
              2000);
    ck_assert_int_eq(cmd("SCARD room:room-c"), 0);
    ck_assert_int_eq(cmd("EXISTS reap:y"), 1); /* the lock stays until it expires */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, node_api_lease_or_gone);
    tcase_add_test(tc, list_reads_every_node);
    tcase_add_test(tc, redis_gone_falls_back_to_peers);
    tcase_add_test(tc, hung_redis_times_out);
    tcase_add_test(tc, lookups_in_flight_at_stop_or_cancelled_never_call_back);
    tcase_add_test(tc, lost_dialout_node_reaped);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
