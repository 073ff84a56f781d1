// predict resolves augur through etcd with gRPC-Go's etcd resolver, exactly as augur's Go callers
// do, and round-robins over every resolved instance: -calls grpc.health.v1 Checks, then -calls
// augur.v1.Prediction/Predict calls (scene "ranking", user u1, items i1,i2, hour=20, device=ios),
// printing one line per call:
//
//	health <peer address> <status>
//	predict <peer address> <score> <score>
//
// It exits non-zero on any error.
//
// Built offline from Debian packages (golang-go, golang-etcd-server-dev, golang-google-grpc-dev;
// the etcd sources pull in golang-goprotobuf-dev, whose protoc-gen-go 1.3 generates the stubs),
// in GOPATH mode. The stubs for proto/augur/v1/prediction.proto are generated into a scratch
// GOPATH as package "augur/v1", not committed. (Debian's newer protoc-gen-go 1.28 conflicts with
// golang-goprotobuf-dev and so would uninstall the etcd sources.)
//
//	G=$(mktemp -d) && mkdir $G/src
//	protoc -I proto --go_out=plugins=grpc:$G/src proto/augur/v1/prediction.proto
//	GO111MODULE=off GOPATH=$G:/usr/share/gocode GOPROXY=off go build -o predict ./examples/go/predict
//
//	./predict -etcd http://127.0.0.1:2379 -service augur -calls 10
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	pb "augur/v1"
	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

func main() {
	endpoint := flag.String("etcd", "http://127.0.0.1:2379", "etcd client URL")
	service := flag.String("service", "augur", "service name augur registers under")
	calls := flag.Int("calls", 10, "health checks and predictions to make")
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
	prediction := pb.NewPredictionClient(conn)
	request := &pb.PredictRequest{
		Scene:  "ranking",
		UserId: "u1",
		Context: map[string]*pb.FeatureValue{
			"hour":   {Kind: &pb.FeatureValue_IntValue{IntValue: 20}},
			"device": {Kind: &pb.FeatureValue_StringValue{StringValue: "ios"}},
		},
		Candidates: []*pb.Candidate{{ItemId: "i1"}, {ItemId: "i2"}},
	}
	// Health checks first, then predictions: each sequence of calls alternates over the instances.
	for i := 0; i < *calls; i++ {
		var p peer.Peer
		status, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Peer(&p))
		if err != nil {
			fail("check: %v", err)
		}
		fmt.Printf("health %s %s\n", p.Addr, status.Status)
	}
	for i := 0; i < *calls; i++ {
		var p peer.Peer
		resp, err := prediction.Predict(ctx, request, grpc.Peer(&p))
		if err != nil {
			fail("predict: %v", err)
		}
		scores := make([]string, len(resp.Scores))
		for j, s := range resp.Scores {
			scores[j] = fmt.Sprint(s)
		}
		fmt.Printf("predict %s %s\n", p.Addr, strings.Join(scores, " "))
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "predict: "+format+"\n", args...)
	os.Exit(1)
}
