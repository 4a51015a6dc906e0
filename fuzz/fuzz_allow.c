/* fuzz_allow.c - target_pattern_match(): transfer.allow patterns against
 * transfer targets, part by part.
 *
 * Input: "PATTERN\nCANDIDATE", or a candidate alone. The candidate is tried
 * against the fuzzed pattern (when it is one) and a fixed set of patterns.
 * Whatever matches must hold up when sofia parses the candidate on its own:
 * the host nua will send to is the pattern's host (literally, or by the
 * pattern's glob), the user holds no '@', no password, no maddr, no '@' in
 * a parameter, and an explicit pattern port is the port dialled. */
#include <assert.h>
#include <ctype.h>
#include <fnmatch.h>
#include <strings.h>

#include <sofia-sip/url.h>

#include "fuzz_common.h"
#include "target.h"

static const char *const fixed[] = {
    "*", "+*", "+1555*", "sip:*", "sips:*", "sip:*@pbx.example.com", "sip:*@*.example.com",
    "sip:agent-*@pbx.example.com:5060", "sip:*@127.0.0.1*", "sip:*@[2001:db8::1]:50*",
    "sip:pbx.example.com", "sips:bob@secure.example.org:5061", NULL,
};

/* The parts of a pattern target_pattern_check() accepted. */
static void pattern_parts(const char *pattern, char *host, size_t hostlen, char *port,
                          size_t portlen)
{
    const char *rest = strchr(pattern, ':') + 1;
    const char *at = strchr(rest, '@');
    snprintf(host, hostlen, "%s", at ? at + 1 : rest);
    port[0] = '\0';
    char *colon = host[0] == '[' ? strchr(host, ']') + 1 : strchr(host, ':');
    if (colon && *colon == ':') {
        snprintf(port, portlen, "%s", colon + 1);
        *colon = '\0';
    }
}

static void check_match(const char *pattern, const char *cand)
{
    if (!target_pattern_match(pattern, cand))
        return;
    char err[160];
    assert(target_pattern_check(pattern, err, sizeof err) == 0);
    if (cand[0] == '+') {
        assert(pattern[0] == '+' || strcmp(pattern, "*") == 0);
        for (const char *p = cand + 1; *p; p++)
            assert(isdigit((unsigned char)*p));
        return;
    }
    assert(pattern[0] != '+');

    char buf[600];
    assert(strlen(cand) < sizeof buf);
    strcpy(buf, cand);
    url_t url[1];
    assert(url_d(url, buf) == 0);
    assert(url->url_type == url_sip || url->url_type == url_sips);
    assert(url->url_host && *url->url_host && !url->url_password);
    assert(!strchr(url->url_host, '@') && !strchr(url->url_host, ';'));
    assert(!url->url_user || !strchr(url->url_user, '@'));
    assert(!url->url_user || !strcasestr(url->url_user, "%40"));
    if (url->url_params) {
        assert(!strchr(url->url_params, '@'));
        for (const char *p = url->url_params; p; p = strchr(p, ';'), p = p ? p + 1 : NULL)
            assert(strncasecmp(p, "maddr", 5) != 0 || (p[5] && p[5] != '=' && p[5] != ';'));
    }
    if (strcmp(pattern, "*") == 0 || strcasecmp(pattern, "sip:*") == 0 ||
        strcasecmp(pattern, "sips:*") == 0)
        return;

    char phost[300], pport[16], host[300];
    pattern_parts(pattern, phost, sizeof phost, pport, sizeof pport);
    snprintf(host, sizeof host, "%s", url->url_host);
    size_t n = strlen(host);
    if (n && host[n - 1] == '.')
        host[n - 1] = '\0';
    if (phost[0] == '[')
        assert(host[0] == '[');
    else if (strpbrk(phost, "*?"))
        assert(fnmatch(phost, host, FNM_CASEFOLD) == 0);
    else
        assert(strcasecmp(phost, host) == 0);
    if (pport[0] && !strpbrk(pport, "*?")) {
        int want = atoi(pport);
        int got = url->url_port ? atoi(url->url_port) : url->url_type == url_sips ? 5061 : 5060;
        assert(got == want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0;
    char *text = fuzz_strndup(data, size);
    char *cand = text, *pattern = NULL;
    char *nl = strchr(text, '\n');
    if (nl) {
        *nl = '\0';
        pattern = text;
        cand = nl + 1;
    }
    char err[160];
    if (pattern) {
        int ok = target_pattern_check(pattern, err, sizeof err) == 0;
        assert(ok || err[0]);
        if (ok)
            check_match(pattern, cand);
        else
            assert(!target_pattern_match(pattern, cand));
    }
    for (const char *const *p = fixed; *p; p++)
        check_match(*p, cand);
    free(text);
    return 0;
}
