/*
 * gd_budget: units of one resource (connections to an upstream) counted for the whole process
 * and shared by the event-loop threads, for a cap too small to split into a share per thread:
 * 4 connections over 16 threads must mean 4, not one per thread.
 *
 * Each thread joins as a member, on its own loop. Taking a unit is one atomic compare-and-swap,
 * giving one back one atomic decrement: no lock on the path of a call while nobody waits. A
 * member that found no unit says it wants one; from then on, every unit given back elsewhere,
 * and the news that it waits, reach the other members as a callback on their own loops
 * (uv_async), so that a waiting member tries again and a member keeping a unit idle (a
 * keep-alive connection) gives it back.
 *
 * Which thread gets a unit that several want is not decided here: whoever takes it first. The
 * waiting line inside a thread stays that thread's own (FIFO).
 */
#ifndef GD_BUDGET_H
#define GD_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

typedef struct gd_budget gd_budget_t;
typedef struct gd_budget_member gd_budget_member_t;

/**
 * Runs on the member's loop after another member gave a unit back or started to want one:
 * try gd_budget_take() again when waiting, and give back idle units while
 * gd_budget_is_wanted_elsewhere().
 */
typedef void (*gd_budget_cb)(gd_budget_member_t *member);

struct gd_budget_member {
    void *data; /* the owner's */
    /* private */
    gd_budget_t *_budget;
    uv_async_t _async;
    gd_budget_cb _cb;
    bool _wants;
};

/** Creates a budget of @total units (at least 1) for up to @max_members members. */
gd_budget_t *gd_budget_new(size_t total, size_t max_members);
/** Frees @budget (NULL is a no-op) once every member has left. Returns NULL. */
gd_budget_t *gd_budget_free(gd_budget_t *budget);
/** Units of @budget in use now (any thread). */
size_t gd_budget_used(const gd_budget_t *budget);
/** The units of @budget, in use or not. */
size_t gd_budget_total(const gd_budget_t *budget);

/**
 * Joins @member (caller-owned storage) to @budget, on @loop, from @loop's thread; @cb as
 * above. Returns 0, or a libuv error.
 */
int gd_budget_join(gd_budget_t *budget, gd_budget_member_t *member, uv_loop_t *loop,
                   gd_budget_cb cb);
/**
 * Leaves: no callback reaches @member afterwards. Its units must have been given back. The
 * loop must then run for the handle to close before @member's storage goes.
 */
void gd_budget_leave(gd_budget_member_t *member);

/** Takes a unit if one is free; returns whether it did. */
bool gd_budget_take(gd_budget_member_t *member);
/** Gives a unit back, and tells the members that want one. */
void gd_budget_give(gd_budget_member_t *member);
/**
 * Says whether @member wants a unit it could not take (it has callers waiting); when it
 * starts to, the other members hear of it, to give idle units back.
 */
void gd_budget_want(gd_budget_member_t *member, bool wants);
/**
 * Wakes every member other than @member (its callback runs on its own loop): news about the
 * resource that all of them must hear, whether they want a unit or not (the server behind it
 * found down, so that callers waiting elsewhere stop waiting).
 */
void gd_budget_tell_others(gd_budget_member_t *member);
/** Whether a member other than @member wants a unit now. */
bool gd_budget_is_wanted_elsewhere(const gd_budget_member_t *member);

#endif
