/* sdp_rewrite.c - SDP inspection and relay rewrite on sofia's sdp parser. */
#include "xalloc.h"
#include "random.h"
#include "sdp_rewrite.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>

static const sdp_connection_t *stream_connection(const sdp_session_t *sdp, const sdp_media_t *m)
{
    return m->m_connections ? m->m_connections : sdp->sdp_connection;
}

/* sofia's sdp_parse() never returns, allocating without bound, when the
 * format list of an m= line whose transport is not RTP has an item starting
 * with a byte outside its token set ("m=video 4000 X /6"), or is blanks only
 * with a tab in them ("m=image 7000 udptl \t"). So every m= line must be
 * exactly "token port[/n] proto fmt..." with proto made of token characters
 * and '/', each fmt a token (RFC 4566) and, without any fmt, nothing after
 * proto. A line is what sofia sees as one: split at CR or LF, leading blanks
 * skipped, the body ending at its first NUL. */
static bool blank(char ch) { return ch == ' ' || ch == '\t'; }

static size_t digits(const char *s, size_t n)
{
    size_t d = 0;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    return d;
}

/* digits, or digits "/" digits (a port with a count) */
static bool port_ok(const char *s, size_t n)
{
    size_t d = digits(s, n);
    if (d == 0 || d == n)
        return d == n;
    return s[d] == '/' && d + 1 < n && d + 1 + digits(s + d + 1, n - d - 1) == n;
}

/* token characters (RFC 4566); with slash, '/' too after the first byte */
static bool token_ok(const char *s, size_t n, bool slash)
{
    static const char tok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789-!#$%&'*+.^_`{|}~";
    for (size_t k = 0; k < n; k++)
        if (!strchr(tok, s[k]) && !(slash && k > 0 && s[k] == '/'))
            return false;
    return true;
}

/* The n bytes after "m=": media, port, proto, then formats, counted into
 * *nfmt. */
static bool media_line_ok(const char *s, size_t n, int *nfmt)
{
    size_t p = 0;
    *nfmt = 0;
    for (int field = 0;; field++) {
        size_t gap = p;
        while (p < n && blank(s[p]))
            p++;
        if (p == n)
            return !(field == 3 && p > gap); /* blanks after proto, no format */
        size_t f = p;
        while (p < n && !blank(s[p]))
            p++;
        if (!(field == 1 ? port_ok(s + f, p - f) : token_ok(s + f, p - f, field == 2)))
            return false;
        if (field >= 3)
            (*nfmt)++;
    }
}

/* One pass over the body before sofia parses it: the m= line syntax above
 * and the SDPX_MAX_* limits, so that neither the parser nor our rewrite
 * ever works on more than a bounded number of lines. */
static int shape_check(const char *body, size_t len, char *err, size_t errlen)
{
    if (len > SDPX_MAX_BYTES) {
        snprintf(err, errlen, "SDP of %zu bytes is over the limit of %d", len, SDPX_MAX_BYTES);
        return SDPX_TOO_LARGE;
    }
    size_t n = strnlen(body, len);
    int lines = 0, attrs = 0, media = 0;
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && body[end] != '\r' && body[end] != '\n')
            end++;
        size_t p = i;
        while (p < end && blank(body[p]))
            p++;
        const char *what = NULL;
        int limit = 0;
        if (++lines > SDPX_MAX_LINES) {
            what = "lines";
            limit = SDPX_MAX_LINES;
        } else if (end - p >= 2 && body[p + 1] == '=' && body[p] == 'a' &&
                   ++attrs > SDPX_MAX_ATTRIBUTES) {
            what = "attributes";
            limit = SDPX_MAX_ATTRIBUTES;
        } else if (end - p >= 2 && body[p + 1] == '=' && body[p] == 'm') {
            int nfmt;
            if (!media_line_ok(body + p + 2, end - p - 2, &nfmt)) {
                snprintf(err, errlen, "bad SDP: malformed m= line");
                return SDPX_BAD;
            }
            if (++media > SDPX_MAX_MEDIA) {
                what = "m= lines";
                limit = SDPX_MAX_MEDIA;
            } else if (nfmt > SDPX_MAX_FORMATS) {
                what = "formats on one m= line";
                limit = SDPX_MAX_FORMATS;
            }
        }
        if (what) {
            snprintf(err, errlen, "SDP has more than %d %s", limit, what);
            return SDPX_TOO_COMPLEX;
        }
        i = end;
        while (i < n && (body[i] == '\r' || body[i] == '\n'))
            i++;
    }
    return 0;
}

/* ---- SDES crypto attributes (RFC 4568) --------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char ch)
{
    const char *p = ch ? strchr(b64_alphabet, ch) : NULL;
    return p ? (int)(p - b64_alphabet) : -1;
}

/* Exactly 40 base64 characters (30 bytes: no padding) into key. */
static bool b64_key_decode(const char *s, size_t n, uint8_t key[SDPX_KEY_LEN])
{
    if (n != SDPX_KEY_LEN / 3 * 4)
        return false;
    for (size_t i = 0, o = 0; i < n; i += 4, o += 3) {
        int v[4];
        for (int k = 0; k < 4; k++)
            if ((v[k] = b64_value(s[i + k])) < 0)
                return false;
        key[o] = (uint8_t)(v[0] << 2 | v[1] >> 4);
        key[o + 1] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
        key[o + 2] = (uint8_t)((v[2] & 3) << 6 | v[3]);
    }
    return true;
}

/* 30 bytes into 40 characters and a NUL. */
static void b64_key_encode(const uint8_t key[SDPX_KEY_LEN], char out[SDPX_KEY_LEN / 3 * 4 + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < SDPX_KEY_LEN; i += 3) {
        unsigned v = (unsigned)key[i] << 16 | (unsigned)key[i + 1] << 8 | key[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    out[o] = '\0';
}

const char *sdpx_suite_name(enum sdpx_suite suite)
{
    switch (suite) {
    case SDPX_SUITE_AES_CM_128_HMAC_SHA1_80:
        return "AES_CM_128_HMAC_SHA1_80";
    case SDPX_SUITE_AES_CM_128_HMAC_SHA1_32:
        return "AES_CM_128_HMAC_SHA1_32";
    case SDPX_SUITE_NONE:
        break;
    }
    return NULL;
}

static bool word_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncmp(s, word, n) == 0;
}

int sdpx_crypto_parse(const char *v, size_t n, struct sdpx_crypto *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n > SDPX_CRYPTO_MAX) {
        snprintf(err, errlen, "a=crypto of more than %d bytes", SDPX_CRYPTO_MAX);
        return -1;
    }
    while (n > 0 && blank(v[n - 1]))
        n--;
    size_t p = 0;
    /* tag: 1*9DIGIT */
    size_t d = digits(v, n);
    if (d == 0 || d > 9 || d == n || !blank(v[d])) {
        snprintf(err, errlen, "a=crypto: bad tag");
        return -1;
    }
    uint32_t tag = 0;
    for (size_t k = 0; k < d; k++)
        tag = tag * 10 + (uint32_t)(v[k] - '0');
    p = d;
    while (p < n && blank(v[p]))
        p++;
    /* crypto-suite */
    size_t f = p;
    while (p < n && !blank(v[p]))
        p++;
    enum sdpx_suite suite = SDPX_SUITE_NONE;
    if (word_is(v + f, p - f, "AES_CM_128_HMAC_SHA1_80"))
        suite = SDPX_SUITE_AES_CM_128_HMAC_SHA1_80;
    else if (word_is(v + f, p - f, "AES_CM_128_HMAC_SHA1_32"))
        suite = SDPX_SUITE_AES_CM_128_HMAC_SHA1_32;
    else {
        snprintf(err, errlen, "a=crypto: unsupported suite \"%.*s\"", (int)(p - f > 40 ? 40 : p - f),
                 v + f);
        return -1;
    }
    while (p < n && blank(v[p]))
        p++;
    /* key-params: one "inline:" key-info, nothing after it */
    f = p;
    while (p < n && !blank(v[p]))
        p++;
    const char *kp = v + f;
    size_t kn = p - f;
    if (p < n) {
        snprintf(err, errlen, "a=crypto: session parameters not supported");
        return -1;
    }
    if (kn < 7 || strncmp(kp, "inline:", 7) != 0) {
        snprintf(err, errlen, "a=crypto: key method is not inline");
        return -1;
    }
    kp += 7;
    kn -= 7;
    if (memchr(kp, ';', kn)) {
        snprintf(err, errlen, "a=crypto: more than one key not supported");
        return -1;
    }
    const char *bar = memchr(kp, '|', kn);
    size_t klen = bar ? (size_t)(bar - kp) : kn;
    if (!b64_key_decode(kp, klen, out->key)) {
        snprintf(err, errlen, "a=crypto: key is not %d bytes of base64", SDPX_KEY_LEN);
        memset(out->key, 0, sizeof out->key);
        return -1;
    }
    /* "|" lifetime, then "|" MKI:length; an MKI we do not support */
    for (int field = 0; bar; field++) {
        const char *s = bar + 1;
        size_t rest = kn - (size_t)(s - kp);
        bar = memchr(s, '|', rest);
        size_t len = bar ? (size_t)(bar - s) : rest;
        if (memchr(s, ':', len)) {
            snprintf(err, errlen, "a=crypto: MKI not supported");
            goto bad;
        }
        /* lifetime: ["2^"] 1*DIGIT */
        size_t off = len >= 2 && s[0] == '2' && s[1] == '^' ? 2 : 0;
        size_t ld = digits(s + off, len - off);
        if (field > 0 || ld == 0 || off + ld != len || ld > (off ? 2 : 20)) {
            snprintf(err, errlen, "a=crypto: bad lifetime");
            goto bad;
        }
    }
    out->suite = suite;
    out->tag = tag;
    return 0;
bad:
    memset(out, 0, sizeof *out);
    return -1;
}

void sdpx_crypto_new(struct sdpx_crypto *out, enum sdpx_suite suite, uint32_t tag)
{
    out->suite = suite;
    out->tag = tag;
    random_bytes(out->key, sizeof out->key);
}

static bool proto_is(const sdp_media_t *m, const char *name)
{
    return m->m_proto_name && strcasecmp(m->m_proto_name, name) == 0;
}

static bool proto_secure(const sdp_media_t *m)
{
    return m->m_proto == sdp_proto_srtp || proto_is(m, "RTP/SAVP") || proto_is(m, "RTP/SAVPF");
}

static bool proto_rtp(const sdp_media_t *m)
{
    return m->m_proto == sdp_proto_rtp || proto_secure(m) || proto_is(m, "RTP/AVPF");
}

int sdpx_refusal(int rc, const char **phrase)
{
    if (rc == SDPX_TOO_LARGE) {
        *phrase = "SDP Too Large";
        return 413;
    }
    *phrase = rc == SDPX_TOO_COMPLEX ? "SDP Too Complex" : "Not Acceptable Here";
    return 488;
}

static int parse_into(su_home_t *home, const char *body, size_t len, sdp_parser_t **parser,
                      struct sdpx_info *info, char *err, size_t errlen)
{
    *parser = NULL;
    if (!body || len == 0) {
        snprintf(err, errlen, "empty SDP");
        return SDPX_BAD;
    }
    int rc = shape_check(body, len, err, errlen);
    if (rc < 0)
        return rc;
    /* Lenient parse: carriers send sloppy SDP (missing t=, odd rtpmaps) and
     * we only need the transport lines to be right. */
    *parser = sdp_parse(home, body, (issize_t)len, 0);
    sdp_session_t *sdp = sdp_session(*parser);
    if (!sdp) {
        snprintf(err, errlen, "bad SDP: %s", sdp_parsing_error(*parser));
        return SDPX_BAD;
    }
    memset(info, 0, sizeof *info);
    if (sdp->sdp_origin) {
        info->o_id = sdp->sdp_origin->o_id;
        info->o_version = sdp->sdp_origin->o_version;
    }
    bool live = false;
    for (const sdp_media_t *m = sdp->sdp_media; m; m = m->m_next) {
        int i = info->nlines++;
        if (i >= SDPX_MAX_STREAMS)
            continue;
        info->nstreams++;
        struct sdpx_stream *s = &info->s[i];
        const sdp_connection_t *c = stream_connection(sdp, m);
        if (m->m_port > 65535) {
            snprintf(err, errlen, "bad SDP: port %lu out of range", m->m_port);
            return SDPX_BAD;
        }
        s->port = (uint16_t)m->m_port;
        s->dtmf_pt = -1;
        /* sofia keeps RTP payload types in m_rtpmaps (in m= line order) and
         * only non-RTP formats in m_format */
        for (const sdp_rtpmap_t *r = m->m_rtpmaps; r; r = r->rm_next) {
            size_t used = strlen(s->formats);
            snprintf(s->formats + used, sizeof s->formats - used, "%s%u", used ? " " : "",
                     r->rm_pt);
        }
        for (const sdp_list_t *f = m->m_format; f; f = f->l_next) {
            size_t used = strlen(s->formats);
            snprintf(s->formats + used, sizeof s->formats - used, "%s%s", used ? " " : "",
                     f->l_text);
        }
        for (const sdp_rtpmap_t *r = m->m_rtpmaps; r; r = r->rm_next)
            if (r->rm_encoding && strcasecmp(r->rm_encoding, "telephone-event") == 0 &&
                r->rm_rate == 8000)
                s->dtmf_pt = (int)r->rm_pt;
        if (s->port == 0)
            continue;
        if (!c || !c->c_address) {
            snprintf(err, errlen, "bad SDP: stream %d has no connection address", i);
            return SDPX_BAD;
        }
        if (c->c_addrtype != sdp_addr_ip4 && c->c_addrtype != sdp_addr_ip6) {
            snprintf(err, errlen, "bad SDP: stream %d address type is not IP4/IP6", i);
            return SDPX_BAD;
        }
        snprintf(s->addr, sizeof s->addr, "%s", c->c_address);
        s->hold_addr = strcmp(c->c_address, "0.0.0.0") == 0;
        s->sendrecv = m->m_mode == sdp_sendrecv;
        if (s->sendrecv && !s->hold_addr)
            live = true;
        s->rtcp_port = (uint16_t)(s->port + 1);
        s->savp = proto_secure(m);
        int ncrypto = 0;
        for (const sdp_attribute_t *a = m->m_attributes; a; a = a->a_next) {
            if (a->a_name && strcasecmp(a->a_name, "rtcp") == 0 && a->a_value) {
                unsigned long p = strtoul(a->a_value, NULL, 10);
                if (p > 0 && p < 65536)
                    s->rtcp_port = (uint16_t)p;
            }
            if (a->a_name && strcasecmp(a->a_name, "crypto") == 0 &&
                ncrypto++ < SDPX_MAX_CRYPTO) {
                struct sdpx_crypto c;
                char why[96];
                const char *v = a->a_value ? a->a_value : "";
                if (sdpx_crypto_parse(v, strnlen(v, SDPX_CRYPTO_MAX + 1), &c, why,
                                      sizeof why) < 0)
                    s->crypto_bad++;
                else if (s->crypto.suite == SDPX_SUITE_NONE)
                    s->crypto = c;
            }
        }
    }
    info->on_hold = !live;
    return 0;
}

int sdpx_parse(const char *body, size_t len, struct sdpx_info *info, char *err, size_t errlen)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *parser = NULL;
    int rc = parse_into(home, body, len, &parser, info, err, errlen);
    sdp_parser_free(parser);
    su_home_deinit(home);
    return rc;
}

/* Attributes that describe transport addresses we replace: keeping them
 * would send the far end around the relay. */
static bool transport_attribute(const char *name)
{
    static const char *const names[] = {"rtcp", "candidate", "ice-ufrag", "ice-pwd",
                                        "ice-options", "remote-candidates", "ice-lite",
                                        "rtcp-mux", NULL};
    for (const char *const *n = names; *n; n++)
        if (strcasecmp(name, *n) == 0)
            return true;
    return false;
}

/* One walk that unlinks as it goes: sdp_attribute_remove() rescans the
 * list from its head for every removal, quadratic in a list of thousands. */
static void drop_transport_attributes(sdp_attribute_t **list)
{
    for (sdp_attribute_t **p = list; *p;) {
        if ((*p)->a_name && transport_attribute((*p)->a_name))
            *p = (*p)->a_next;
        else
            p = &(*p)->a_next;
    }
}

/* Unlinks every a=crypto of list. */
static void drop_crypto_attributes(sdp_attribute_t **list)
{
    for (sdp_attribute_t **p = list; *p;) {
        if ((*p)->a_name && strcasecmp((*p)->a_name, "crypto") == 0)
            *p = (*p)->a_next;
        else
            p = &(*p)->a_next;
    }
}

/* RTP/AVP <-> RTP/SAVP and RTP/AVPF <-> RTP/SAVPF; other profiles as they are. */
static void set_profile(sdp_media_t *m, bool secure)
{
    if (secure) {
        if (m->m_proto == sdp_proto_rtp) {
            m->m_proto = sdp_proto_srtp;
            m->m_proto_name = "RTP/SAVP";
        } else if (proto_is(m, "RTP/AVPF")) {
            m->m_proto_name = "RTP/SAVPF";
        }
    } else {
        if (m->m_proto == sdp_proto_srtp || proto_is(m, "RTP/SAVP")) {
            m->m_proto = sdp_proto_rtp;
            m->m_proto_name = "RTP/AVP";
        } else if (proto_is(m, "RTP/SAVPF")) {
            m->m_proto_name = "RTP/AVPF";
        }
    }
}

char *sdpx_rewrite(const char *body, size_t len, const char *address, const uint16_t *ports,
                   int nports, const struct sdpx_origin *origin, char *err, size_t errlen)
{
    return sdpx_rewrite_srtp(body, len, address, ports, nports, origin, NULL, err, errlen);
}

char *sdpx_rewrite_srtp(const char *body, size_t len, const char *address,
                        const uint16_t *ports, int nports, const struct sdpx_origin *origin,
                        const struct sdpx_srtp_out *srtp, char *err, size_t errlen)
{
    /* our a=crypto lines: "tag suite inline:" + 40 characters */
    sdp_attribute_t crypto_attr[SDPX_MAX_STREAMS];
    char crypto_text[SDPX_MAX_STREAMS][96];

    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *parser = NULL;
    struct sdpx_info info;
    char *out = NULL;

    if (parse_into(home, body, len, &parser, &info, err, errlen) < 0)
        goto done;
    sdp_session_t *sdp = sdp_session(parser);
    sdp_addrtype_e atype = strchr(address, ':') ? sdp_addr_ip6 : sdp_addr_ip4;

    /* A fresh connection for us; the hold connection (0.0.0.0) is kept so a
     * RFC 2543 style hold reaches the other side as a hold. */
    sdp_connection_t ours = {.c_size = sizeof ours, .c_nettype = sdp_net_in,
                             .c_addrtype = atype, .c_address = address};
    sdp_connection_t hold = {.c_size = sizeof hold, .c_nettype = sdp_net_in,
                             .c_addrtype = sdp_addr_ip4, .c_address = "0.0.0.0"};

    bool session_hold = sdp->sdp_connection && sdp->sdp_connection->c_address &&
                        strcmp(sdp->sdp_connection->c_address, "0.0.0.0") == 0;
    if (sdp->sdp_connection)
        sdp->sdp_connection = session_hold ? &hold : &ours;

    int i = 0;
    for (sdp_media_t *m = sdp->sdp_media; m; m = m->m_next, i++) {
        bool media_hold = m->m_connections && m->m_connections->c_address &&
                          strcmp(m->m_connections->c_address, "0.0.0.0") == 0;
        if (m->m_port == 0 || i >= nports || i >= SDPX_MAX_STREAMS || ports[i] == 0) {
            m->m_port = 0;
            m->m_rejected = 1;
        } else {
            m->m_port = ports[i];
        }
        if (m->m_connections)
            m->m_connections = media_hold ? &hold : &ours;
        else if (!sdp->sdp_connection)
            m->m_connections = &ours;
        drop_transport_attributes(&m->m_attributes);
        if (srtp) {
            drop_crypto_attributes(&m->m_attributes);
            const struct sdpx_crypto *c = i < SDPX_MAX_STREAMS ? &srtp->crypto[i] : NULL;
            const char *suite = c ? sdpx_suite_name(c->suite) : NULL;
            bool secure = suite && !m->m_rejected && proto_rtp(m);
            if (proto_rtp(m) && !(secure && srtp->keep_profile))
                set_profile(m, secure);
            if (secure) {
                char key[SDPX_KEY_LEN / 3 * 4 + 1];
                b64_key_encode(c->key, key);
                snprintf(crypto_text[i], sizeof crypto_text[i], "%u %s inline:%s",
                         (unsigned)c->tag, suite, key);
                crypto_attr[i] = (sdp_attribute_t){.a_size = sizeof crypto_attr[i],
                                                   .a_name = "crypto",
                                                   .a_value = crypto_text[i]};
                sdp_attribute_t **tail = &m->m_attributes;
                while (*tail)
                    tail = &(*tail)->a_next;
                *tail = &crypto_attr[i];
            }
        }
    }
    drop_transport_attributes(&sdp->sdp_attributes);
    if (srtp)
        drop_crypto_attributes(&sdp->sdp_attributes);

    sdp_origin_t o = {.o_size = sizeof o, .o_username = "sipxfer", .o_id = origin ? origin->id : 1,
                      .o_version = origin ? origin->version : 1, .o_address = &ours};
    sdp->sdp_origin = &o;

    sdp_printer_t *pr = sdp_print(home, sdp, NULL, 0, 0);
    const char *text = sdp_message(pr);
    if (!text) {
        snprintf(err, errlen, "cannot print SDP: %s", sdp_printing_error(pr));
    } else {
        out = xstrdup(text);
    }
    sdp_printer_free(pr);
done:
    sdp_parser_free(parser);
    su_home_deinit(home);
    return out;
}
