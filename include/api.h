/* api.h - the REST control API and /metrics, served by libmicrohttpd with
 * no thread of its own: its epoll fd is registered on the control su_root. */
#ifndef SIPXFER_API_H
#define SIPXFER_API_H

#include <stddef.h>

struct app;
struct api;

struct api *api_start(struct app *app, char *err, size_t errlen);
void api_stop(struct api *api);

#endif
