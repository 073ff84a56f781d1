// resolve_health resolves augur through etcd with gRPC-Go's etcd resolver, exactly as augur's Go
// callers do, and calls grpc.health.v1 Check round-robin over every resolved instance, printing
// one "<peer address> <status>" line per call.
//
// Built offline from Debian packages (golang-go, golang-etcd-server-dev, golang-google-grpc-dev),
// in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
//	  go build -o resolve_health ./examples/go/resolve_health
//
//	./resolve_health -etcd http://127.0.0.1:2379 -service augur -calls 10
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

func main() {
	endpoint := flag.String("etcd", "http://127.0.0.1:2379", "etcd client URL")
	service := flag.String("service", "augur", "service name augur registers under")
	calls := flag.Int("calls", 10, "health checks to make")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("etcd: %v", err)
	}
	defer cli.Close()
	builder, err := resolver.NewBuilder(cli)
	if err != nil {
		fail("resolver: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, "etcd:///"+*service,
		grpc.WithResolvers(builder),
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithDefaultServiceConfig(`{"loadBalancingPolicy":"round_robin"}`),
	)
	if err != nil {
		fail("dial etcd:///%s: %v", *service, err)
	}
	defer conn.Close()
	health := grpc_health_v1.NewHealthClient(conn)
	for i := 0; i < *calls; i++ {
		var p peer.Peer
		resp, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Peer(&p))
		if err != nil {
			fail("check: %v", err)
		}
		fmt.Printf("%s %s\n", p.Addr, resp.Status)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "resolve_health: "+format+"\n", args...)
	os.Exit(1)
}
