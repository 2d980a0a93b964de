// A Go client for tailgate's compatibility test: one GET through a proxy, as Go programs usually make it.
// HTTP proxies go through net/http's own proxy support (http.ProxyURL: CONNECT for https targets, absolute-form
// requests for http ones). SOCKS5 goes through golang.org/x/net/proxy by default, or with -socks=nethttp through
// net/http's built-in SOCKS5 client (what a Go program gets from HTTPS_PROXY=socks5://…); both send names unresolved.
//
// Prints the status line on the first line of stdout and the body after it; exits 1 with the error on stderr
// when no answer came.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/net/proxy"
)

func main() {
	proxyArg := flag.String("proxy", "", "proxy URL: http://USER:PASS@HOST:PORT or socks5://USER:PASS@HOST:PORT")
	target := flag.String("url", "", "URL to GET")
	caFile := flag.String("cacert", "", "PEM file of extra roots trusted for https targets")
	timeout := flag.Duration("timeout", 10*time.Second, "whole request timeout")
	socksClient := flag.String("socks", "xnet", "SOCKS5 client: xnet (golang.org/x/net/proxy) or nethttp (net/http's own)")
	flag.Parse()
	if err := run(*proxyArg, *target, *caFile, *socksClient, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(proxyArg, target, caFile, socksClient string, timeout time.Duration) error {
	proxyURL, err := url.Parse(proxyArg)
	if err != nil {
		return fmt.Errorf("bad -proxy: %w", err)
	}
	transport := &http.Transport{DisableKeepAlives: true}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	switch {
	case proxyURL.Scheme == "http" || (proxyURL.Scheme == "socks5" && socksClient == "nethttp"):
		transport.Proxy = http.ProxyURL(proxyURL)
	case proxyURL.Scheme == "socks5" && socksClient == "xnet":
		dialer, err := proxy.FromURL(proxyURL, &net.Dialer{Timeout: timeout})
		if err != nil {
			return err
		}
		contextDialer, ok := dialer.(proxy.ContextDialer)
		if !ok {
			return fmt.Errorf("the SOCKS5 dialer cannot take a context")
		}
		transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return contextDialer.DialContext(ctx, network, addr)
		}
	default:
		return fmt.Errorf("unsupported proxy scheme %q (with -socks=%s)", proxyURL.Scheme, socksClient)
	}
	client := &http.Client{Transport: transport, Timeout: timeout}
	res, err := client.Get(target)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n%s", res.Status, body)
	return nil
}
