/* random.h - unpredictable bytes for identifiers (session ids, SDP origins,
 * RTP SSRC/sequence). */
#ifndef SIPXFER_RANDOM_H
#define SIPXFER_RANDOM_H

#include <stddef.h>

/* Fills buf with n bytes from the kernel's CSPRNG. Bytes are fetched in
 * blocks and handed out once each, so a call set-up costs no syscall of its
 * own; thread-safe. */
void random_bytes(void *buf, size_t n);

#endif
