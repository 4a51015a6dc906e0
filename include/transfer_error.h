/* transfer_error.h - why a transfer request was refused. transfer.c returns
 * these; each front end words them its own way: api.c as an HTTP status
 * and error kind (api_transfer_error()), refer.c as a SIP answer to a room's
 * REFER (refer_refusal()). */
#ifndef SIPXFER_TRANSFER_ERROR_H
#define SIPXFER_TRANSFER_ERROR_H

enum transfer_error {
    XFER_OK = 0,
    XFER_E_RUNNING,       /* another transfer of this session is in flight */
    XFER_E_NOT_CONNECTED, /* the call is not (or not yet) bridged, or renegotiating */
    XFER_E_NO_MEDIA,      /* the caller has no media description yet */
    XFER_E_NO_PORTS,      /* no relay ports left for the new leg */
    XFER_E_FORBIDDEN,     /* the target is not in transfer.allow */
    XFER_E_BAD_TARGET,    /* not a target we can parse, address or make an offer for */
    XFER_E_NOT_FOUND,     /* (cancel) nothing in flight */
    XFER_E_ANSWERED,      /* (cancel) the target has answered already */
    XFER_E_REFER_SENT,    /* (cancel) a REFER cannot be withdrawn */
};

#endif
