/* main.c - sipxferd: command line, signals, the control loop.
 *
 * One thread runs one su_root: sofia nua, the HTTP API and the signalfd are
 * all registered on it. The relay runs in its own worker thread(s). */
#include "sofia_types.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <sofia-sip/su.h>
#include <sofia-sip/su_log.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "app.h"
#include "b2bua.h"
#include "call.h"
#include "cluster.h"
#include "config.h"
#include "dns_guard.h"
#include "events.h"
#include "gateway.h"
#include "http_client.h"
#include "log.h"
#include "log_limit.h"
#include "looplag.h"
#include "media_watch.h"
#include "registration.h"
#include "relay.h"
#include "resolver.h"
#include "tcp_guard.h"
#include "xalloc.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sipxferd -c FILE [--check-config] [-v]\n"
            "\n"
            "  -c, --config FILE   configuration file (libconfig syntax)\n"
            "      --check-config  validate FILE and exit: 0 valid, 1 not (file:line on stderr)\n"
            "  -v, --verbose       debug logging (twice: also sofia-sip's own log)\n"
            "      --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT/SIGUSR1 drain (new calls and OPTIONS get 503, /v1/health\n"
            "503; live calls get drain_timeout seconds, then are hung up) and exit 0; SIGHUP\n"
            "reloads rooms, routes, trunks and transfer policy without dropping calls.\n");
}

/* ---- events ------------------------------------------------------------ */

/* Every relayed call holds four sockets: take the hard limit on open files
 * as the soft one, and say when it cannot hold max_calls. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    unsigned long long need = 64 + (cfg->media_mode == MEDIA_RELAY ? 4ULL : 0ULL) *
                                       (unsigned long long)cfg->max_calls;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_warn("open files limit %llu is below the %llu that sip.max_calls=%d needs: calls "
                 "beyond ~%llu get 503 (raise LimitNOFILE / ulimit -n)",
                 (unsigned long long)rl.rlim_cur, need, cfg->max_calls,
                 ((unsigned long long)rl.rlim_cur - 64) / 4);
}

/* Descriptors SIP TCP must leave free: four per call the relay may still
 * open (no more than the media range holds), the API's connection limit
 * (api.c) and 64 for sofia, curl, logs and the rest. */
static void apply_tcp_limits(const struct config *cfg)
{
    long relay = 0;
    if (cfg->media_mode == MEDIA_RELAY) {
        relay = 4L * cfg->max_calls;
        if (relay > cfg->port_max - cfg->port_min + 1)
            relay = cfg->port_max - cfg->port_min + 1;
    }
    tcp_guard_configure(cfg->tcp_max_connections, cfg->tcp_max_per_source, cfg->tcp_idle_timeout,
                        (int)(64 + 256 + relay));
}

/* ---- shutdown ---------------------------------------------------------- */

/* Webhooks still queued at exit (e.g. dialin.stopped of the calls a drain
 * hung up) get up to 5 s to go out. */
static void flush_tick(struct app *app, su_timer_t *t, void *arg)
{
    size_t left = events_pending(app->events);
    if (left == 0 || ++app->life.flush_ticks > 50) {
        if (left)
            log_warn("exiting with %zu webhook event(s) undelivered", left);
        su_root_break(app->root);
        return;
    }
    su_timer_set(t, flush_tick, arg);
}

static void shutdown_done(struct app *app)
{
    size_t left = app->events ? events_pending(app->events) : 0;
    if (left == 0) {
        su_root_break(app->root);
        return;
    }
    log_info("delivering %zu webhook event(s) before exit (up to 5 s)", left);
    app->life.flush_timer = su_timer_create(su_root_task(app->root), 100);
    su_timer_set(app->life.flush_timer, flush_tick, NULL);
}

static void stop_now(struct app *app)
{
    if (app->stopping)
        return;
    app->stopping = true;
    log_info("stopping: %zu call(s) left", call_count(app->calls));
    b2bua_shutdown(app->b2bua, shutdown_done);
}

static void drain_tick(struct app *app, su_timer_t *t, void *arg);

static void drain_step(struct app *app, su_timer_t *t, void *arg)
{
    struct app_life *l = &app->life;
    if (call_count(app->calls) == 0) {
        stop_now(app);
        return;
    }
    if (l->ticks_after_hangup < 0 && time(NULL) >= l->drain_deadline) {
        log_info("drain timeout: hanging up %zu call(s)", call_count(app->calls));
        b2bua_hangup_all(app->b2bua, 503, "Service Unavailable");
        l->ticks_after_hangup = 0;
    } else if (l->ticks_after_hangup >= 0 && ++l->ticks_after_hangup > 50) {
        /* BYEs unanswered for 5 s: nua_shutdown ends what is left. */
        stop_now(app);
        return;
    }
    su_timer_set(t, drain_tick, arg);
}

static void drain_tick(struct app *app, su_timer_t *t, void *arg)
{
    struct looplag_mark m;
    looplag_begin(&m, "timer", "drain", NULL);
    drain_step(app, t, arg);
    looplag_end(&m);
}

static void begin_drain(struct app *app)
{
    if (app->draining) {
        log_info("second stop signal: hanging up now");
        app->life.drain_deadline = 0;
        return;
    }
    app->draining = true;
    cluster_set_state(app, "draining"); /* the directory says so at once */
    app->life.drain_deadline = (long)time(NULL) + app->cfg->drain_timeout;
    log_info("draining: refusing new calls, %zu call(s) have %d s to finish", call_count(app->calls),
             app->cfg->drain_timeout);
    app->life.drain_timer = su_timer_create(su_root_task(app->root), 100);
    su_timer_set(app->life.drain_timer, drain_tick, NULL);
}

/* ---- reload ------------------------------------------------------------ */

static void keep_string(char **newv, char *oldv, const char *name)
{
    if (strcmp(*newv, oldv) != 0) {
        log_warn("reload: %s changed (\"%s\" -> \"%s\"): needs a restart, keeping the old value",
                 name, oldv, *newv);
    }
    free(*newv);
    *newv = xstrdup(oldv);
}

/* The same for a setting that may be unset (NULL). */
static void keep_optional(char **newv, char *oldv, const char *name)
{
    if ((*newv == NULL) != (oldv == NULL) || (oldv && strcmp(*newv, oldv) != 0))
        log_warn("reload: %s changed: needs a restart, keeping the old value", name);
    free(*newv);
    *newv = oldv ? xstrdup(oldv) : NULL;
}

/* The same for a list of strings. */
static void keep_strv(char ***newv, size_t *newn, char ***oldv, size_t *oldn, const char *name)
{
    bool same = *newn == *oldn;
    for (size_t i = 0; same && i < *newn; i++)
        same = strcmp((*newv)[i], (*oldv)[i]) == 0;
    if (same)
        return;
    log_warn("reload: %s changed: needs a restart, keeping the old value", name);
    /* swapped: the old configuration, freed after the reload, takes the new list */
    char **v = *newv;
    size_t n = *newn;
    *newv = *oldv;
    *newn = *oldn;
    *oldv = v;
    *oldn = n;
}

static void reload(struct app *app)
{
    char err[512];
    struct config *old = app->cfg;
    struct config *cfg = config_load(old->path, err, sizeof err);
    if (!cfg) {
        log_error("reload failed, keeping the running configuration: %s", err);
        return;
    }
    /* What is bound to sockets or threads stays as started. */
    keep_string(&cfg->sip_listen, old->sip_listen, "sip.listen");
    keep_string(&cfg->api_listen, old->api_listen, "api.listen");
    keep_string(&cfg->media_address, old->media_address, "media.address");
    keep_optional(&cfg->sips_listen, old->sips_listen, "sip.listen (sips:)");
    keep_optional(&cfg->sip_advertise, old->sip_advertise, "sip.advertise");
    keep_optional(&cfg->media_advertise, old->media_advertise, "media.advertise");
    /* sofia read the TLS files at start */
    keep_optional(&cfg->tls.certificate, old->tls.certificate, "sip.tls.certificate");
    keep_optional(&cfg->tls.ca, old->tls.ca, "sip.tls.ca");
    cfg->tls.verify_peer = old->tls.verify_peer;
    keep_string(&cfg->node, old->node, "node");
    /* the directory connection and the lease it refreshes were set up at start */
    keep_string(&cfg->cluster.redis, old->cluster.redis, "cluster.redis");
    if (cfg->cluster.lease != old->cluster.lease) {
        log_warn("reload: cluster.lease changed: needs a restart, keeping %d", old->cluster.lease);
        cfg->cluster.lease = old->cluster.lease;
    }
    if (cfg->media_kernel != old->media_kernel) {
        log_warn("reload: media.kernel changed: needs a restart, keeping the old value");
        cfg->media_kernel = old->media_kernel;
    }
    /* the running program stays attached where it was */
    keep_strv(&cfg->media_kernel_interfaces, &cfg->nmedia_kernel_interfaces,
              &old->media_kernel_interfaces, &old->nmedia_kernel_interfaces,
              "media.kernel_interfaces");
    if (cfg->media_warm_pairs != old->media_warm_pairs) {
        log_warn("reload: media.warm_pairs changed: needs a restart, keeping %d",
                 old->media_warm_pairs);
        cfg->media_warm_pairs = old->media_warm_pairs;
    }
    if (cfg->media_mode != old->media_mode || cfg->port_min != old->port_min ||
        cfg->port_max != old->port_max) {
        log_warn("reload: media.mode/port_min/port_max changed: needs a restart, keeping the old "
                 "values");
        cfg->media_mode = old->media_mode;
        cfg->port_min = old->port_min;
        cfg->port_max = old->port_max;
    }
    if (cfg->api_idle_timeout != old->api_idle_timeout) {
        log_warn("reload: api.idle_timeout changed: needs a restart, keeping the old value");
        cfg->api_idle_timeout = old->api_idle_timeout;
    }
    app->cfg = cfg;
    gateways_sync(app); /* by trunk name and URI: known states kept */
    config_free(old);
    apply_tcp_limits(cfg);
    registration_reload(app);
    log_info("reloaded %s: %zu trunk(s), %zu room(s), %zu route(s)", cfg->path, cfg->ntrunks,
             cfg->nrooms, cfg->nroutes);
}

/* ---- signals ----------------------------------------------------------- */

static int on_signal(struct app *app, su_wait_t *w, void *arg)
{
    int fd = *(int *)arg;
    struct signalfd_siginfo si;
    struct looplag_mark m;
    looplag_begin(&m, "signal", "read", NULL);
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            looplag_rename(&m, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            log_info("signal %s", m.name);
            begin_drain(app);
            break;
        case SIGUSR1:
            /* the operator's drain (SPEC 13): the same as SIGTERM, named
             * apart so a process manager's stop and a drain read apart */
            looplag_rename(&m, "SIGUSR1 drain");
            log_info("signal SIGUSR1: draining");
            begin_drain(app);
            break;
        case SIGHUP:
            looplag_rename(&m, "SIGHUP reload");
            log_info("signal SIGHUP: reloading");
            reload(app);
            break;
        }
    }
    looplag_end(&m);
    return 0;
}

/* Idle memory goes back to the system. glibc keeps freed heap pages, so
 * after a burst of 20,000 calls the process stayed at its peak RSS for good
 * (docs/performance.md). While no call is up, trim every TRIM_EVERY_MS for
 * TRIM_WINDOW_MS after the last call: sofia frees a call's transactions only
 * ~32 s after it ends. Never while calls are up, so no call pays for the
 * heap walk. */
#define TRIM_EVERY_MS 10000
#define TRIM_WINDOW_MS 60000

static void trim_tick(struct app *app, su_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "malloc-trim", NULL);
    if (call_count(app->calls) > 0)
        app->life.idle_trims_left = TRIM_WINDOW_MS / TRIM_EVERY_MS;
    else if (app->life.idle_trims_left > 0) {
        app->life.idle_trims_left--;
        malloc_trim(0);
    }
    looplag_end(&m);
}

/* A crash must not take the last loop turn's log lines with it: they are
 * the ones that say what led to it. The handler writes them and re-raises
 * with the default action (core dump). Under ASan its own SEGV/BUS/FPE
 * handlers print the report; only abort() is ours there. */
static void on_fatal(int sig)
{
    log_flush_on_crash();
    raise(sig); /* SA_RESETHAND: the default action now */
}

static void catch_fatal_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = (int)(SA_RESETHAND | SA_NODEFER);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
#if !defined(__SANITIZE_ADDRESS__)
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
#endif
}

static void flush_logs(su_prepoll_magic_t *magic, su_root_t *root)
{
    (void)magic;
    (void)root;
    struct looplag_mark m;
    looplag_begin(&m, "log", "flush", NULL);
    log_flush();
    looplag_end(&m);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"check-config", no_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},       {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool check_only = false;
    int verbose = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'v':
            verbose++;
            break;
        case 'V':
            printf("sipxferd %s\n", SIPXFER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }

    char err[512];
    struct config *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "sipxferd: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: OK\n", path);
        config_free(cfg);
        return 0;
    }
    if (verbose)
        log_set_level(LOG_DEBUG);
    setvbuf(stderr, NULL, _IOLBF, 0);
    raise_fd_limit(cfg);
    for (size_t i = 0; i < cfg->ntokens; i++)
        if (strcmp(cfg->tokens[i], "change-me") == 0)
            log_warn("api.tokens holds the shipped example token \"change-me\": anyone who "
                     "reaches %s can move calls; set your own", cfg->api_listen);

    /* Signals go to the signalfd only; block them before any thread starts
     * so relay workers inherit the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    su_init();
    su_log_set_level(NULL, verbose > 1 ? 9 : 0);
    /* a flood can make sofia repeat one line per packet or connection;
     * with -v -v its debug output is wanted, so the limit is wider */
    su_log_redirect(NULL, log_limit_sofia, (void *)(uintptr_t)(verbose > 1 ? 200 : 5));
    catch_fatal_signals();
    log_buffer_this_thread(1);
    atexit(log_flush);

    int rc = 1;
    struct app *app = app_create(cfg, err, sizeof err);
    if (!app) {
        log_error("%s", err);
        log_buffer_this_thread(0);
        su_deinit();
        return 1;
    }
    /* the control thread's log lines are written once per loop turn */
    su_root_add_prepoll(app->root, flush_logs, NULL);
    if (tcp_guard_start(app->root, app->sip_port) < 0)
        log_warn("SIP TCP listener not found: TCP connections are not capped");
    apply_tcp_limits(cfg);
    app->api = api_start(app, err, sizeof err);
    if (!app->api) {
        log_error("%s", err);
        goto out;
    }

    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    su_wait_t sw;
    su_wait_create(&sw, sfd, SU_WAIT_IN);
    int sidx = su_root_register(app->root, &sw, on_signal, &sfd, 0);

    app->life.trim_timer = su_timer_create(su_root_task(app->root), TRIM_EVERY_MS);
    su_timer_run(app->life.trim_timer, trim_tick, NULL);

    log_info("sipxferd %s node %s: SIP on %s, API on %s, media %s%s", SIPXFER_VERSION, cfg->node,
             cfg->sip_listen, cfg->api_listen,
             cfg->media_mode == MEDIA_RELAY ? "relay on " : "passthrough",
             cfg->media_mode == MEDIA_RELAY ? cfg->media_address : "");
    looplag_init(app->root);
    /* Start-up (binding sip.listen) may still resolve; from here on this
     * thread resolves nothing (dns_guard.h). */
    dns_guard_arm();
    su_root_run(app->root);
    looplag_stop();
    log_info("stopped");
    log_buffer_this_thread(0);
    rc = 0;

    su_root_deregister(app->root, sidx);
    close(sfd);
out:
    su_root_remove_prepoll(app->root);
    tcp_guard_stop();
    app_destroy(app);
    su_deinit();
    return rc;
}
