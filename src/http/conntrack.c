/*
 * conntrack.c - per-connection request deadlines. See conntrack.h.
 */
#include "http/conntrack.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

struct kw_conntrack_entry {
    int fd;
    _Atomic uint64_t deadline_ns;
    kw_conntrack_entry *prev, *next;
};

struct kw_conntrack {
    pthread_mutex_t lock;
    kw_conntrack_entry *head;
};

kw_conntrack *kw_conntrack_new(void)
{
    kw_conntrack *t = calloc(1, sizeof *t);
    if (t)
        pthread_mutex_init(&t->lock, NULL);
    return t;
}

void kw_conntrack_free(kw_conntrack *t)
{
    if (!t)
        return;
    while (t->head) {
        kw_conntrack_entry *next = t->head->next;
        free(t->head);
        t->head = next;
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

kw_conntrack_entry *kw_conntrack_add(kw_conntrack *t, int fd, uint64_t deadline_ns)
{
    kw_conntrack_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->fd = fd;
    atomic_store(&e->deadline_ns, deadline_ns);
    pthread_mutex_lock(&t->lock);
    e->next = t->head;
    if (t->head)
        t->head->prev = e;
    t->head = e;
    pthread_mutex_unlock(&t->lock);
    return e;
}

void kw_conntrack_remove(kw_conntrack *t, kw_conntrack_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&t->lock);
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    pthread_mutex_unlock(&t->lock);
    free(e);
}

void kw_conntrack_set_deadline(kw_conntrack_entry *e, uint64_t deadline_ns)
{
    if (e)
        atomic_store_explicit(&e->deadline_ns, deadline_ns, memory_order_relaxed);
}

unsigned kw_conntrack_expire(kw_conntrack *t, uint64_t now_ns)
{
    unsigned n = 0;
    pthread_mutex_lock(&t->lock);
    for (kw_conntrack_entry *e = t->head; e; e = e->next) {
        uint64_t due = atomic_load_explicit(&e->deadline_ns, memory_order_relaxed);
        if (due != 0 && due <= now_ns) {
            shutdown(e->fd, SHUT_RDWR);
            atomic_store_explicit(&e->deadline_ns, 0, memory_order_relaxed);
            n++;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}
