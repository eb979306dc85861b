/*
 * trivial_server - the reference of `make bench` for what libmicrohttpd
 * itself costs: the thread model and daemon options of `keyward serve`
 * (src/http/server.c, src/http/gate.c), and a handler that answers every
 * request with the same constant JSON body and the same response headers
 * as a verification of a valid key.
 *
 * Usage: trivial_server [--listen 127.0.0.1:0] [--threads N] [--memory BYTES]
 *
 * Like keyward, it accepts connections itself on an epoll thread and hands
 * them to libmicrohttpd with MHD_add_connection; libmicrohttpd runs a pool
 * of N epoll threads (default: one per online CPU, as keyward). The
 * request body is read and dropped. Once listening it prints
 * "listening PORT" on stdout; SIGTERM or SIGINT stop it.
 *
 * --memory sets libmicrohttpd's memory per connection (default: keyward's,
 * 2 x 8192 + 16384 bytes), to see what that memory costs: libmicrohttpd
 * zeroes all of it after each request.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

/* The shape and size of a valid key's answer (src/core/json.c). */
static const char body[] = "{\"valid\":true,\"code\":\"VALID\",\"account_id\":"
                           "\"acc_0000000000000000000000\",\"key_id\":"
                           "\"key_0000000000000000000000\",\"name\":\"bench\","
                           "\"environment\":\"live\"}";

static struct MHD_Response *reply;

/* Non-NULL con_cls once the head is in; the body, if any, is dropped. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    static int begun;
    if (!*con_cls) {
        *con_cls = &begun;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, reply);
}

typedef struct {
    int listen_fd;
    int epoll_fd;
    int wake_fd;
    struct MHD_Daemon *daemon;
} acceptor;

/* keyward's gate thread, less the waiting for and checking of each first head. */
static void *accept_loop(void *arg)
{
    acceptor *a = arg;
    struct epoll_event events[8];
    for (;;) {
        int n = epoll_wait(a->epoll_fd, events, 8, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.fd == a->wake_fd)
                return NULL;
            for (;;) {
                struct sockaddr_storage addr;
                socklen_t len = sizeof addr;
                int fd = accept4(a->listen_fd, (struct sockaddr *)&addr, &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                /* On failure libmicrohttpd closes the socket itself. */
                (void)MHD_add_connection(a->daemon, fd, (struct sockaddr *)&addr, len);
            }
        }
    }
}

static int open_listener(const char *listen_text, uint16_t *port)
{
    char host[64];
    const char *colon = strrchr(listen_text, ':');
    if (!colon || (size_t)(colon - listen_text) >= sizeof host)
        return -1;
    memcpy(host, listen_text, (size_t)(colon - listen_text));
    host[colon - listen_text] = '\0';
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    socklen_t len = sizeof sin;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:0";
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    long memory = 8192 * 2 + 16384;
    bool usage = argc % 2 == 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen_text = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--memory") == 0)
            memory = strtol(argv[i + 1], NULL, 10);
        else
            usage = true;
    }
    if (usage || threads < 1 || threads > 256 || memory < 4096 || memory > (1L << 24)) {
        fprintf(stderr,
                "usage: trivial_server [--listen 127.0.0.1:0] [--threads N] [--memory BYTES]\n");
        return 2;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    reply = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!reply || MHD_add_response_header(reply, "Content-Type", "application/json") != MHD_YES ||
        MHD_add_response_header(reply, "Cache-Control", "no-store") != MHD_YES ||
        MHD_add_response_header(reply, "X-Content-Type-Options", "nosniff") != MHD_YES)
        return 1;

    acceptor a = {.listen_fd = -1};
    uint16_t port = 0;
    a.listen_fd = open_listener(listen_text, &port);
    if (a.listen_fd < 0) {
        fprintf(stderr, "trivial_server: cannot listen on %s\n", listen_text);
        return 1;
    }
    /* The flags and limits of kw_http_start with its defaults (kw_http_options_defaults). */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME;
    a.daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(8192 * 2 + 16384), MHD_OPTION_END);
    a.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    a.wake_fd = eventfd(0, EFD_CLOEXEC);
    struct epoll_event listen_ev = {.events = EPOLLIN, .data.fd = a.listen_fd};
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.fd = a.wake_fd};
    pthread_t thread;
    if (!a.daemon || a.epoll_fd < 0 || a.wake_fd < 0 ||
        epoll_ctl(a.epoll_fd, EPOLL_CTL_ADD, a.listen_fd, &listen_ev) != 0 ||
        epoll_ctl(a.epoll_fd, EPOLL_CTL_ADD, a.wake_fd, &wake_ev) != 0 ||
        pthread_create(&thread, NULL, accept_loop, &a) != 0) {
        fprintf(stderr, "trivial_server: cannot start: %s\n", strerror(errno));
        return 1;
    }
    printf("listening %u\n", (unsigned)port);
    fflush(stdout);

    int signum = 0;
    sigwait(&stop_signals, &signum);
    uint64_t one = 1;
    ssize_t w = write(a.wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(thread, NULL);
    close(a.listen_fd);
    MHD_stop_daemon(a.daemon);
    MHD_destroy_response(reply);
    close(a.epoll_fd);
    close(a.wake_fd);
    return 0;
}
