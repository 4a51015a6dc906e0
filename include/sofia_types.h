/* sofia_types.h - the application types sofia's callbacks carry.
 * Include this before any sofia-sip header so every translation unit agrees
 * on what the opaque "magic" pointers are. */
#ifndef SIPXFER_SOFIA_TYPES_H
#define SIPXFER_SOFIA_TYPES_H

struct app;
struct leg;

#define SU_ROOT_MAGIC_T struct app
#define NUA_MAGIC_T struct app
#define NUA_HMAGIC_T struct leg
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T void

#include <sofia-sip/su_wait.h>
#include <sofia-sip/nua.h>

#endif
