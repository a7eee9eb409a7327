/*
 * gd_heap_give_back: gives the heap memory that is free back to the system, from the thread
 * whose arena it is. glibc's malloc_trim() gives back the free pages inside every arena but
 * shrinks the top chunk (the free end of a heap) of the main arena only; a thread's own arena
 * shrinks its top only in a free() that finds it above the trim threshold, which glibc raises
 * to twice the largest block freed. After a burst of 7 MB answers, each worker thread's arena
 * kept a free top of 7-14 MB that no malloc_trim() could give back.
 */
#ifndef GD_HEAPTRIM_H
#define GD_HEAPTRIM_H

/* Runs malloc_trim(0), then shrinks the calling thread's arena top. Takes some milliseconds
 * after a large burst (the pages are unmapped): call it on an idle thread. The first call fixes
 * glibc's thresholds where its dynamic ones end up after large blocks (see heaptrim.c). */
void gd_heap_give_back(void);

#endif
