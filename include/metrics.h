/* metrics.h - Prometheus text exposition of the daemon's counters. */
#ifndef SIPXFER_METRICS_H
#define SIPXFER_METRICS_H

struct app;

/* Returns a malloc'd text/plain (version 0.0.4) document. */
char *metrics_render(struct app *app);

#endif
