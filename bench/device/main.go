// Device-side stand-in for the benchmarks: a minimal HTTP CONNECT proxy, as a device on the tailnet runs
// (no auth). Go, so that io.Copy between two TCP sockets uses splice(2) and the device costs little CPU on
// the core it shares with the gateway under test; half-close is propagated (CloseWrite) so a tunnel
// ends as soon as both sides are done, with no linger that would pile up descriptors under churn.
// Prints {"ready":true,"port":N} once listening on 127.0.0.1.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"ready\":true,\"port\":%d}\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and friends: back off instead of spinning.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go serve(c.(*net.TCPConn))
	}
}

func serve(c *net.TCPConn) {
	c.SetNoDelay(true)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	upc := up.(*net.TCPConn)
	upc.SetNoDelay(true)
	c.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		upc.Close()
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := upc.Write(b); err != nil {
			c.Close()
			upc.Close()
			return
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go pipe(upc, c, &wg)
	go pipe(c, upc, &wg)
	wg.Wait()
	c.Close()
	upc.Close()
}

// pipe copies until EOF and passes the EOF on as a half-close; on an error it closes both sides so the
// opposite direction stops too.
func pipe(dst, src *net.TCPConn, wg *sync.WaitGroup) {
	defer wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		dst.Close()
		src.Close()
		return
	}
	dst.CloseWrite()
}
