/*
 * gate.c - accepting connections and holding them until their first
 * request head is in and checked. See gate.h.
 *
 * One thread, one epoll set. Waiting connections are kept in accept order,
 * which is also deadline order (they all get the same timeout), so expiry
 * and eviction both take from the front. A hash of client groups counts
 * the waiting connections of each. A refused connection is answered, then
 * kept a little longer while its unread bytes are drained ("lingering
 * close"): closing a socket with unread bytes sends a reset, which can
 * destroy the answer before the client reads it.
 */
#include "http/gate.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/json.h"
#include "http/http_internal.h"

#define BUCKETS      1024
#define LINGER_NS    (2 * 1000000000ull)
#define PROBATION_NS (1000000000ull) /* for a head beyond its client's budget */
#define TICK_NS      (250 * 1000000ull)

typedef struct waiting waiting;
struct waiting {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    kw_gate_peer peer;
    uint64_t deadline_ns;
    bool got_bytes;
    bool lingering;
    bool dead;            /* closed: freed once the current batch of events is done */
    struct list *in;      /* the list w is in */
    waiting *prev, *next; /* in that list, oldest first */
    waiting *chain;       /* in the peer hash bucket (waiting ones only) */
};

typedef struct list {
    waiting *head, *tail;
    size_t count;
} list;

/* Connections of one client that libmicrohttpd serves. */
typedef struct served served;
struct served {
    kw_gate_peer peer;
    unsigned n;
    served *next;
};

typedef struct added added;
struct added {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    added *next;
};

struct kw_gate {
    kw_gate_options opt;
    int listen_fd;
    int epoll_fd;
    int wake_fd;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool draining;
    list waiting_list;   /* within their client's budget: the head timeout */
    list probation_list; /* beyond it: PROBATION_NS to finish their head */
    list lingering_list;
    waiting *buckets[BUCKETS];
    char *scratch;                /* limits.max_head_bytes + 1 */
    uint64_t accept_paused_until; /* out of descriptors: accept again from then */
    waiting *graveyard;           /* closed entries an event of the current batch may still name */
    pthread_mutex_t added_lock;
    added *added;
    pthread_mutex_t served_lock;
    served *served[BUCKETS];
};

static char listen_marker, wake_marker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

kw_gate_peer kw_gate_peer_of(const struct sockaddr *addr, socklen_t len)
{
    kw_gate_peer p = {{0}};
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        p.bytes[0] = 4;
        memcpy(p.bytes + 1, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            p.bytes[0] = 4;
            memcpy(p.bytes + 1, a->s6_addr + 12, 4);
        } else {
            p.bytes[0] = 6;
            memcpy(p.bytes + 1, a->s6_addr, 8);
        }
    }
    return p;
}

static size_t bucket_of(const kw_gate_peer *p)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < sizeof p->bytes; i++)
        h = (h ^ p->bytes[i]) * 16777619u;
    return h % BUCKETS;
}

static bool same_peer(const kw_gate_peer *a, const kw_gate_peer *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

static unsigned peer_count(const kw_gate *g, const kw_gate_peer *p)
{
    unsigned n = 0;
    for (const waiting *w = g->buckets[bucket_of(p)]; w; w = w->chain)
        n += same_peer(&w->peer, p);
    return n;
}

static unsigned served_count(kw_gate *g, const kw_gate_peer *p)
{
    unsigned n = 0;
    pthread_mutex_lock(&g->served_lock);
    for (const served *s = g->served[bucket_of(p)]; s; s = s->next)
        if (same_peer(&s->peer, p))
            n = s->n;
    pthread_mutex_unlock(&g->served_lock);
    return n;
}

void kw_gate_served(kw_gate *g, const struct sockaddr *addr, socklen_t len, int delta)
{
    kw_gate_peer p = kw_gate_peer_of(addr, len);
    pthread_mutex_lock(&g->served_lock);
    served **at = &g->served[bucket_of(&p)];
    while (*at && !same_peer(&(*at)->peer, &p))
        at = &(*at)->next;
    if (!*at && delta > 0) {
        *at = calloc(1, sizeof **at);
        if (*at)
            (*at)->peer = p;
    }
    if (*at) {
        served *s = *at;
        if (delta > 0)
            s->n += (unsigned)delta;
        else
            s->n = s->n > (unsigned)-delta ? s->n - (unsigned)-delta : 0;
        if (s->n == 0) {
            *at = s->next;
            free(s);
        }
    }
    pthread_mutex_unlock(&g->served_lock);
}

static void list_push(list *l, waiting *w)
{
    w->in = l;
    w->prev = l->tail;
    w->next = NULL;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    l->count++;
}

/* Takes the oldest out of l, or returns NULL when l is empty. */
static waiting *list_pop(list *l)
{
    waiting *w = l->head;
    if (!w)
        return NULL;
    l->head = w->next;
    if (l->head)
        l->head->prev = NULL;
    else
        l->tail = NULL;
    l->count--;
    w->in = NULL;
    return w;
}

static void list_remove(list *l, waiting *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    l->count--;
}

/* Takes w out of its list (if still in one), the peer hash and the epoll set. */
static void unlink_waiting(kw_gate *g, waiting *w)
{
    if (w->in)
        list_remove(w->in, w);
    w->in = NULL;
    waiting **at = &g->buckets[bucket_of(&w->peer)];
    while (*at != w)
        at = &(*at)->chain;
    *at = w->chain;
    epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
}

/*
 * Frees w once the current batch of epoll events is handled: an event for
 * it may come later in the same batch (it was evicted by another one).
 */
static void bury(kw_gate *g, waiting *w)
{
    w->dead = true;
    w->next = g->graveyard;
    g->graveyard = w;
}

static void free_graveyard(kw_gate *g)
{
    while (g->graveyard) {
        waiting *next = g->graveyard->next;
        free(g->graveyard);
        g->graveyard = next;
    }
}

/* Closes a lingering connection already taken out of the lingering list. */
static void close_lingered(kw_gate *g, waiting *w)
{
    epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    bury(g, w);
}

static void close_lingering(kw_gate *g, waiting *w)
{
    list_remove(&g->lingering_list, w);
    close_lingered(g, w);
}

size_t kw_gate_error_response(unsigned status, const char *message, char *out, size_t size)
{
    json_t *doc = json_pack("{s:{s:s, s:s}}", "error", "code", kw_http_error_code(status),
                            "message", message);
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return 0;
    const char *reason = MHD_get_reason_phrase_for(status);
    int n = snprintf(out, size,
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n%s",
                     status, reason && *reason ? reason : "Error", strlen(body), body);
    kw_json_free(body);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* Reads and drops what the client has sent; false once it has closed or failed. */
static bool drain_input(int fd, char *buf, size_t size)
{
    for (;;) {
        ssize_t n = recv(fd, buf, size, MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
}

/*
 * Ends a waiting connection: answers it (status 0: no answer) and lingers,
 * or closes it at once when there is nothing to answer.
 */
static void refuse(kw_gate *g, waiting *w, unsigned status, const char *message)
{
    unlink_waiting(g, w);
    if (g->opt.refused)
        g->opt.refused(g->opt.cls, status, message);
    if (status == 0) {
        close(w->fd);
        bury(g, w);
        return;
    }
    char response[1024];
    size_t len = kw_gate_error_response(status, message, response, sizeof response);
    if (len)
        (void)send(w->fd, response, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(w->fd, SHUT_WR);
    if (!drain_input(w->fd, g->scratch, g->opt.limits.max_head_bytes + 1)) {
        close(w->fd);
        bury(g, w);
        return;
    }
    w->lingering = true;
    w->deadline_ns = now_ns() + LINGER_NS;
    list_push(&g->lingering_list, w);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = w};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        close_lingering(g, w);
}

static bool examine(kw_gate *g, waiting *w, uint32_t events);

/*
 * A new connection: refused when its client has too many already, else
 * looked at at once (its head is often there already). When its client, or
 * everyone, has too many waiting, the oldest waiting one goes: a slow
 * sender's, not the one that just came.
 */
static void admit(kw_gate *g, int fd, const struct sockaddr_storage *addr, socklen_t len)
{
    if (atomic_load(&g->draining)) {
        close(fd);
        return;
    }
    kw_gate_peer peer = kw_gate_peer_of((const struct sockaddr *)addr, len);
    if (peer_count(g, &peer) + served_count(g, &peer) >= g->opt.max_per_peer) {
        if (g->opt.refused)
            g->opt.refused(g->opt.cls, 0, "a connection was closed: too many from one client");
        close(fd);
        return;
    }
    waiting *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return;
    }
    w->fd = fd;
    memcpy(&w->addr, addr, len);
    w->addr_len = len;
    w->peer = peer;
    w->deadline_ns = now_ns() + (uint64_t)g->opt.head_timeout_s * 1000000000u;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = w};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(w);
        return;
    }
    list_push(&g->waiting_list, w);
    size_t b = bucket_of(&peer);
    w->chain = g->buckets[b];
    g->buckets[b] = w;
    if (!examine(g, w, 0))
        return;
    if (peer_count(g, &peer) > g->opt.waiting_per_peer) {
        /* Beyond the client's budget: a burst of fast clients still gets
         * in, a slow one is cut off soon. */
        list_remove(&g->waiting_list, w);
        w->deadline_ns = now_ns() + PROBATION_NS;
        list_push(&g->probation_list, w);
    }
    if (g->waiting_list.count + g->probation_list.count > g->opt.waiting_max) {
        list *from = g->probation_list.head ? &g->probation_list : &g->waiting_list;
        waiting *oldest = list_pop(from);
        if (oldest)
            refuse(g, oldest, 0, "a waiting connection was closed: too many waiting");
    }
}

/*
 * Looks at what has arrived of w's first head, and hands it over, refuses
 * it or waits. Returns true while w waits.
 */
static bool examine(kw_gate *g, waiting *w, uint32_t events)
{
    size_t cap = g->opt.limits.max_head_bytes + 1;
    ssize_t n = recv(w->fd, g->scratch, cap, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return true;
    if (n <= 0) { /* closed before a whole head: nothing to answer */
        refuse(g, w, 0, "closed before a whole request head");
        return false;
    }
    w->got_bytes = true;
    kw_framing_verdict v = {0, NULL};
    size_t head_len = 0;
    switch (kw_framing_scan_head(g->scratch, (size_t)n, &g->opt.limits, &head_len, &v)) {
    case KW_HEAD_INCOMPLETE:
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) { /* no more bytes will come */
            refuse(g, w, 400, "The connection ended before the request head did.");
            return false;
        }
        return true;
    case KW_HEAD_REFUSED:
        refuse(g, w, v.status, v.message);
        return false;
    case KW_HEAD_COMPLETE:
        break;
    }
    unlink_waiting(g, w);
    g->opt.handoff(g->opt.cls, w->fd, (const struct sockaddr *)&w->addr, w->addr_len);
    bury(g, w);
    return false;
}

static void on_lingering(kw_gate *g, waiting *w)
{
    if (!drain_input(w->fd, g->scratch, g->opt.limits.max_head_bytes + 1))
        close_lingering(g, w);
}

static void watch_listener(kw_gate *g, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &listen_marker};
    epoll_ctl(g->epoll_fd, EPOLL_CTL_MOD, g->listen_fd, &ev);
}

static void accept_all(kw_gate *g)
{
    for (;;) {
        struct sockaddr_storage addr;
        memset(&addr, 0, sizeof addr);
        socklen_t len = sizeof addr;
        int fd =
            accept4(g->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a failure (EMFILE...) the next round retries */
        admit(g, fd, &addr, len);
    }
}

static void take_added(kw_gate *g)
{
    uint64_t count;
    ssize_t r = read(g->wake_fd, &count, sizeof count);
    (void)r;
    pthread_mutex_lock(&g->added_lock);
    added *a = g->added;
    g->added = NULL;
    pthread_mutex_unlock(&g->added_lock);
    while (a) {
        added *next = a->next;
        admit(g, a->fd, &a->addr, a->addr_len);
        free(a);
        a = next;
    }
}

/* Cuts off heads past their deadline, and ends lingering past theirs. */
static void expire(kw_gate *g, uint64_t now)
{
    list *lists[] = {&g->waiting_list, &g->probation_list};
    waiting *w;
    for (size_t i = 0; i < 2; i++)
        while (lists[i]->head && lists[i]->head->deadline_ns <= now) {
            w = list_pop(lists[i]);
            refuse(g, w, w->got_bytes ? 408 : 0,
                   "The request head did not arrive in time; the connection is closed.");
        }
    while (g->lingering_list.head && g->lingering_list.head->deadline_ns <= now)
        close_lingered(g, list_pop(&g->lingering_list));
    if (g->accept_paused_until && now >= g->accept_paused_until) {
        g->accept_paused_until = 0;
        watch_listener(g, true);
    }
    if (atomic_load(&g->draining))
        for (size_t i = 0; i < 2; i++)
            while ((w = list_pop(lists[i])))
                refuse(g, w, 0, "stopping");
}

static void *run(void *arg)
{
    kw_gate *g = arg;
    struct epoll_event events[64];
    uint64_t next_tick = now_ns() + TICK_NS;
    while (!atomic_load(&g->stop)) {
        int n = epoll_wait(g->epoll_fd, events, 64, (int)(TICK_NS / 1000000));
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &listen_marker)
                accept_all(g);
            else if (p == &wake_marker)
                take_added(g);
            else if (((waiting *)p)->dead)
                continue;
            else if (((waiting *)p)->lingering)
                on_lingering(g, p);
            else
                examine(g, p, events[i].events);
        }
        uint64_t now = now_ns();
        expire(g, now);
        free_graveyard(g);
        if (now >= next_tick) {
            next_tick = now + TICK_NS;
            if (g->opt.tick)
                g->opt.tick(g->opt.cls, now);
        }
    }
    return NULL;
}

kw_status kw_gate_start(int listen_fd, const kw_gate_options *o, kw_gate **out, kw_error *err)
{
    *out = NULL;
    kw_gate *g = calloc(1, sizeof *g);
    if (!g) {
        close(listen_fd);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    }
    g->opt = *o;
    if (g->opt.waiting_per_peer == 0)
        g->opt.waiting_per_peer = 1;
    if (g->opt.waiting_max == 0)
        g->opt.waiting_max = 1;
    g->listen_fd = listen_fd;
    g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    g->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    g->scratch = malloc(o->limits.max_head_bytes + 1);
    pthread_mutex_init(&g->added_lock, NULL);
    pthread_mutex_init(&g->served_lock, NULL);
    struct epoll_event listen_ev = {.events = EPOLLIN, .data.ptr = &listen_marker};
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.ptr = &wake_marker};
    if (g->epoll_fd < 0 || g->wake_fd < 0 || !g->scratch ||
        epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, listen_fd, &listen_ev) != 0 ||
        epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, g->wake_fd, &wake_ev) != 0 ||
        pthread_create(&g->thread, NULL, run, g) != 0) {
        int e = errno;
        if (g->epoll_fd >= 0)
            close(g->epoll_fd);
        if (g->wake_fd >= 0)
            close(g->wake_fd);
        close(listen_fd);
        free(g->scratch);
        pthread_mutex_destroy(&g->added_lock);
        pthread_mutex_destroy(&g->served_lock);
        free(g);
        return kw_error_set(err, KW_ERR_INTERNAL, "Cannot start accepting connections: %s.",
                            strerror(e));
    }
    *out = g;
    return KW_OK;
}

void kw_gate_add(kw_gate *g, int fd, const struct sockaddr *addr, socklen_t len)
{
    added *a = calloc(1, sizeof *a);
    if (!a || len > (socklen_t)sizeof a->addr) {
        free(a);
        close(fd);
        return;
    }
    a->fd = fd;
    memcpy(&a->addr, addr, len);
    a->addr_len = len;
    pthread_mutex_lock(&g->added_lock);
    a->next = g->added;
    g->added = a;
    pthread_mutex_unlock(&g->added_lock);
    uint64_t one = 1;
    ssize_t w = write(g->wake_fd, &one, sizeof one);
    (void)w;
}

void kw_gate_drain(kw_gate *g)
{
    atomic_store(&g->draining, true);
    uint64_t one = 1;
    ssize_t w = write(g->wake_fd, &one, sizeof one);
    (void)w;
}

void kw_gate_stop(kw_gate *g)
{
    if (!g || atomic_exchange(&g->stop, true))
        return;
    uint64_t one = 1;
    ssize_t w = write(g->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(g->thread, NULL);
    list *lists[] = {&g->waiting_list, &g->probation_list};
    waiting *x;
    for (size_t i = 0; i < 2; i++)
        while ((x = list_pop(lists[i]))) {
            unlink_waiting(g, x);
            close(x->fd);
            free(x);
        }
    while ((x = list_pop(&g->lingering_list)))
        close_lingered(g, x);
    free_graveyard(g);
    pthread_mutex_lock(&g->added_lock);
    added *a = g->added;
    g->added = NULL;
    pthread_mutex_unlock(&g->added_lock);
    while (a) {
        added *next = a->next;
        close(a->fd);
        free(a);
        a = next;
    }
    close(g->listen_fd);
}

void kw_gate_free(kw_gate *g)
{
    if (!g)
        return;
    kw_gate_stop(g);
    close(g->epoll_fd);
    close(g->wake_fd);
    for (size_t i = 0; i < BUCKETS; i++)
        while (g->served[i]) {
            served *next = g->served[i]->next;
            free(g->served[i]);
            g->served[i] = next;
        }
    free(g->scratch);
    pthread_mutex_destroy(&g->added_lock);
    pthread_mutex_destroy(&g->served_lock);
    free(g);
}
