/* fnvm_net.h: outbound TCP and TLS connections from a C function (clang --target=wasm32-wasi,
 * wasi-libc): the product description's host_tcp_connect and host_tls_connect, as fnvm provides
 * them (import module "fnvm"). WASI preview1 can use sockets but not open them; these open one
 * and give back a file descriptor that read(), write(), send(), recv(), shutdown(), close(),
 * fcntl(O_NONBLOCK) and poll() use as usual. The whole ABI (errnos, the egress policy that says
 * where a function may connect, limits) is in hostcalls/NET.md of fnvm's repository.
 *
 *   #include "fnvm_net.h"
 *   uint32_t fd;
 *   const char *addr = "example.com:443", *name = "example.com";
 *   int e = host_tls_connect(addr, strlen(addr), name, strlen(name), 0, &fd);
 *   if (e != 0) { errno = e; perror("connect"); return 1; }
 *   write(fd, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", 56);
 *   ... read(fd, buf, sizeof buf) until it returns 0 ...
 *   close(fd);
 *
 * Unlike the description's `void` prototypes, both return the WASI errno of the failure (0 on
 * success), and write the descriptor to *fd_ptr only on success: a `void` declaration would
 * not link (fnvm checks imports' types). wasi-libc's errno values are WASI's, so the result can
 * be stored in errno as is. */
#ifndef FNVM_NET_H
#define FNVM_NET_H

#include <stddef.h>
#include <stdint.h>

/* flags: the new descriptor does not block (reads and writes fail with EAGAIN instead). */
#define FNVM_NET_NONBLOCK 1u

/* Connects to address ("host:port", "1.2.3.4:port" or "[::1]:port"; names are resolved by the
 * host). Returns 0 and stores the new descriptor at *fd_ptr, or a WASI errno. */
__attribute__((import_module("fnvm"), import_name("host_tcp_connect")))
int32_t host_tcp_connect(const char *address_ptr, size_t address_size, uint32_t flags,
                         uint32_t *fd_ptr);

/* As host_tcp_connect, then a TLS handshake verifying the server's certificate as hostname
 * (also sent as SNI), with the host's trusted roots. Reads and writes are then plaintext. */
__attribute__((import_module("fnvm"), import_name("host_tls_connect")))
int32_t host_tls_connect(const char *address_ptr, size_t address_size, const char *hostname_ptr,
                         size_t hostname_size, uint32_t flags, uint32_t *fd_ptr);

#endif
