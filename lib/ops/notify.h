/*
 * gd_notify: systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to
 * the unix socket named by $NOTIFY_SOCKET ("@name" is in the abstract namespace). Sent with
 * MSG_DONTWAIT, so it never blocks a loop.
 */
#ifndef GD_NOTIFY_H
#define GD_NOTIFY_H

/**
 * Sends @state ("READY=1", "STOPPING=1", ...) to the service manager. Returns 0 when sent or
 * when there is no NOTIFY_SOCKET (not run by systemd), -errno otherwise.
 */
int gd_notify(const char *state);

#endif
