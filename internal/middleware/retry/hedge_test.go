package retry_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/registry"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/internal/middleware/retry"
	"github.com/rampart-go/rampart/internal/rpc"
)

// answer is what an instance does with one attempt of a given number.
type answer struct {
	hang     bool          // wait until the attempt is cancelled
	sleep    time.Duration // answer after this
	err      error
	pushback string
}

// hedgeUsers is one instance: it answers each attempt as its attempt
// number says and records what it saw.
type hedgeUsers struct {
	userv1.UnimplementedUserServiceServer
	name    string
	answers map[int]answer // by attempt number; missing: answer at once

	mu        sync.Mutex
	attempts  []int
	cancelled int
}

func (s *hedgeUsers) GetUser(ctx context.Context, _ *userv1.GetUserRequest) (*userv1.GetUserReply, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	n := 1
	if v := md.Get(rpc.AttemptHeader); len(v) == 1 {
		n, _ = strconv.Atoi(v[0])
	}
	s.mu.Lock()
	s.attempts = append(s.attempts, n)
	s.mu.Unlock()
	a := s.answers[n]
	if a.hang {
		a.sleep = time.Minute
	}
	if a.sleep > 0 {
		select {
		case <-time.After(a.sleep):
		case <-ctx.Done():
			s.mu.Lock()
			s.cancelled++
			s.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	if a.pushback != "" {
		if err := grpc.SetTrailer(ctx, metadata.Pairs(rpc.PushbackTrailer, a.pushback)); err != nil {
			return nil, err
		}
	}
	if a.err != nil {
		return nil, a.err
	}
	return &userv1.GetUserReply{User: &userv1.User{Id: s.name}}, nil
}

func (s *hedgeUsers) seen() (attempts []int, cancelled int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.attempts...), s.cancelled
}

// staticDiscovery hands Kratos' resolver a fixed list of instances.
type staticDiscovery struct{ instances []*registry.ServiceInstance }

func (d staticDiscovery) GetService(context.Context, string) ([]*registry.ServiceInstance, error) {
	return d.instances, nil
}

func (d staticDiscovery) Watch(context.Context, string) (registry.Watcher, error) {
	return &staticWatcher{list: d.instances, stop: make(chan struct{})}, nil
}

type staticWatcher struct {
	list     []*registry.ServiceInstance
	sent     bool
	stop     chan struct{}
	stopOnce sync.Once
}

func (w *staticWatcher) Next() ([]*registry.ServiceInstance, error) {
	if !w.sent {
		w.sent = true
		return w.list, nil
	}
	<-w.stop
	return nil, context.Canceled
}

func (w *staticWatcher) Stop() error {
	w.stopOnce.Do(func() { close(w.stop) })
	return nil
}

// hedgeCluster serves each instance on loopback and returns a client that
// reaches them as server.Dialer does: Kratos' balancer over discovery,
// with the retry interceptor and its AvoidTried filter.
func hedgeCluster(t *testing.T, ic grpc.UnaryClientInterceptor, instances ...*hedgeUsers) userv1.UserServiceClient {
	t.Helper()
	var list []*registry.ServiceInstance
	for _, inst := range instances {
		addr := serve(t, inst)
		list = append(list, &registry.ServiceInstance{ID: inst.name, Name: "user", Endpoints: []string{"grpc://" + addr}})
	}
	conn, err := kgrpc.DialInsecure(testCtx(t),
		kgrpc.WithEndpoint("discovery:///user"),
		kgrpc.WithDiscovery(staticDiscovery{instances: list}),
		kgrpc.WithTimeout(0),
		kgrpc.WithUnaryInterceptor(ic),
		kgrpc.WithNodeFilter(retry.AvoidTried()),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := userv1.NewUserServiceClient(conn)
	// A hedge goes only to an instance the balancer offered, so wait
	// until it offers every one: gRPC connects them one by one. CreateUser
	// is not hedged, and these servers do not implement it.
	reached := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); len(reached) < len(instances); {
		if time.Now().After(deadline) {
			t.Fatalf("the balancer reached %d of %d instances", len(reached), len(instances))
		}
		var p peer.Peer
		_, _ = client.CreateUser(testCtx(t), &userv1.CreateUserRequest{}, grpc.Peer(&p))
		if p.Addr != nil {
			reached[p.Addr.String()] = true
		}
	}
	return client
}

// hedged returns a retry interceptor that hedges GetUser with h.
func hedged(h retry.HedgingConfig, budget *retry.Budget, opts ...retry.Option) grpc.UnaryClientInterceptor {
	opts = append(opts, retry.WithHedging(func(m string) retry.HedgingConfig {
		if m == getUser {
			return h
		}
		return retry.HedgingConfig{}
	}))
	return retry.Client("user", nil, budget, opts...)
}

func TestHedging(t *testing.T) {
	const delay = 50 * time.Millisecond
	plenty := retry.BudgetConfig{Ratio: 1, MinPerSecond: 100}
	tests := []struct {
		name    string
		h       retry.HedgingConfig
		budget  retry.BudgetConfig
		answers map[int]answer // the same on both instances
		wantErr codes.Code
		// wantAttempts is the attempt numbers the two instances saw, in
		// order; wantCancelled how many of them the servers saw cancelled.
		wantAttempts  []int
		wantCancelled int
		minElapsed    time.Duration
		maxElapsed    time.Duration
	}{{
		name:    "a slow first attempt is hedged after the delay and cancelled once the hedge wins",
		h:       retry.HedgingConfig{Delay: delay, MaxAttempts: 2},
		budget:  plenty,
		answers: map[int]answer{1: {hang: true}},
		wantErr: codes.OK, wantAttempts: []int{1, 2}, wantCancelled: 1,
		minElapsed: delay, maxElapsed: 5 * time.Second,
	}, {
		name:    "no budget, no hedge: the first attempt is waited for",
		h:       retry.HedgingConfig{Delay: delay, MaxAttempts: 2},
		budget:  retry.BudgetConfig{},
		answers: map[int]answer{1: {sleep: 4 * delay}},
		wantErr: codes.OK, wantAttempts: []int{1},
		minElapsed: 4 * delay, maxElapsed: 5 * time.Second,
	}, {
		name:    "a fatal code ends the call and cancels the attempt in flight",
		h:       retry.HedgingConfig{Delay: delay, MaxAttempts: 3},
		budget:  plenty,
		answers: map[int]answer{1: {hang: true}, 2: {err: status.Error(codes.NotFound, "no such user")}},
		wantErr: codes.NotFound, wantAttempts: []int{1, 2}, wantCancelled: 1,
		minElapsed: delay, maxElapsed: 5 * time.Second,
	}, {
		name:    "a non-fatal failure sends the next hedge at once",
		h:       retry.HedgingConfig{Delay: 2 * time.Second, MaxAttempts: 2},
		budget:  plenty,
		answers: map[int]answer{1: {err: status.Error(codes.Unavailable, "busy")}},
		wantErr: codes.OK, wantAttempts: []int{1, 2},
		maxElapsed: time.Second,
	}, {
		name:    "a negative pushback stops hedging (A6)",
		h:       retry.HedgingConfig{Delay: delay, MaxAttempts: 2},
		budget:  plenty,
		answers: map[int]answer{1: {err: status.Error(codes.Unavailable, "go away"), pushback: "-1"}},
		wantErr: codes.Unavailable, wantAttempts: []int{1},
		maxElapsed: time.Second,
	}, {
		name:    "a positive pushback delays the next hedge by its wait (A6)",
		h:       retry.HedgingConfig{Delay: 2 * time.Second, MaxAttempts: 2},
		budget:  plenty,
		answers: map[int]answer{1: {err: status.Error(codes.Unavailable, "later"), pushback: "150"}},
		wantErr: codes.OK, wantAttempts: []int{1, 2},
		minElapsed: 150 * time.Millisecond, maxElapsed: time.Second,
	}, {
		name:    "no third instance: max_attempts 3 over two instances sends one hedge",
		h:       retry.HedgingConfig{Delay: delay, MaxAttempts: 3},
		budget:  plenty,
		answers: map[int]answer{1: {hang: true}, 2: {hang: true}},
		wantErr: codes.DeadlineExceeded, wantAttempts: []int{1, 2}, wantCancelled: 2,
		minElapsed: 500 * time.Millisecond, maxElapsed: 5 * time.Second,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &hedgeUsers{name: "a", answers: tt.answers}
			b := &hedgeUsers{name: "b", answers: tt.answers}
			client := hedgeCluster(t, hedged(tt.h, retry.NewBudget(tt.budget)), a, b)
			ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			reply, err := client.GetUser(ctx, &userv1.GetUserRequest{Id: "u1"})
			elapsed := time.Since(start)
			if got := status.Code(err); got != tt.wantErr {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantErr)
			}
			if elapsed < tt.minElapsed || elapsed > tt.maxElapsed {
				t.Errorf("took %v, want between %v and %v", elapsed, tt.minElapsed, tt.maxElapsed)
			}
			aSeen, aCancelled := a.seen()
			bSeen, bCancelled := b.seen()
			// Never the same instance twice in one call.
			if len(aSeen) > 1 || len(bSeen) > 1 {
				t.Errorf("an instance saw more than one attempt: a %v, b %v", aSeen, bSeen)
			}
			got := append(aSeen, bSeen...)
			if len(got) != len(tt.wantAttempts) {
				t.Fatalf("attempts %v, want %v", got, tt.wantAttempts)
			}
			if err == nil && reply.GetUser().GetId() == "" {
				t.Error("empty reply from the winner")
			}
			// The servers see a cancellation shortly after the call
			// returns: the reset travels over the connection.
			deadline := time.Now().Add(2 * time.Second)
			for aCancelled+bCancelled < tt.wantCancelled && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				_, aCancelled = a.seen()
				_, bCancelled = b.seen()
			}
			if aCancelled+bCancelled != tt.wantCancelled {
				t.Errorf("servers saw %d cancellations, want %d", aCancelled+bCancelled, tt.wantCancelled)
			}
		})
	}
}

// The winner's reply is the one the caller gets, whichever attempt won.
func TestHedgeWinnerReply(t *testing.T) {
	a := &hedgeUsers{name: "a", answers: map[int]answer{1: {hang: true}}}
	b := &hedgeUsers{name: "b", answers: map[int]answer{1: {hang: true}}}
	client := hedgeCluster(t, hedged(retry.HedgingConfig{Delay: 20 * time.Millisecond, MaxAttempts: 2}, nil), a, b)
	reply, err := client.GetUser(testCtx(t), &userv1.GetUserRequest{Id: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	aSeen, _ := a.seen()
	winner := "b"
	if len(aSeen) == 1 && aSeen[0] == 2 {
		winner = "a"
	}
	if reply.GetUser().GetId() != winner {
		t.Errorf("reply from %q, want the hedge's instance %q", reply.GetUser().GetId(), winner)
	}
}

// A method its proto does not declare NO_SIDE_EFFECTS is never hedged,
// whatever the policy says.
func TestOnlyNoSideEffectsMethodsAreHedged(t *testing.T) {
	if !retry.HasNoSideEffects(getUser) {
		t.Errorf("%s: want NO_SIDE_EFFECTS", getUser)
	}
	for _, m := range []string{createUser, createOrder, "/order.v1.OrderService/Nope", "garbage"} {
		if retry.HasNoSideEffects(m) {
			t.Errorf("%s: HasNoSideEffects true, want false", m)
		}
	}
}

func TestHedgesAreObservable(t *testing.T) {
	reader, mp, recorder, tp := observed(t)
	hang := map[int]answer{1: {hang: true}}
	a, b := &hedgeUsers{name: "a", answers: hang}, &hedgeUsers{name: "b", answers: hang}
	client := hedgeCluster(t, hedged(retry.HedgingConfig{Delay: 20 * time.Millisecond, MaxAttempts: 2}, nil, retry.WithMeterProvider(mp)), a, b)

	ctx, span := tp.Tracer("test").Start(testCtx(t), "GetUser")
	if _, err := client.GetUser(ctx, &userv1.GetUserRequest{Id: "u1"}); err != nil {
		t.Fatal(err)
	}
	span.End()

	var attempts []int64
	for _, e := range recorder.Ended()[0].Events() {
		if e.Name == "hedge" {
			set := attribute.NewSet(e.Attributes...)
			v, _ := set.Value("rampart.hedge.attempt")
			attempts = append(attempts, v.AsInt64())
		}
	}
	if len(attempts) != 1 || attempts[0] != 2 {
		t.Errorf("hedge events with attempts %v, want [2]", attempts)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(testCtx(t), &rm); err != nil {
		t.Fatal(err)
	}
	key := attribute.NewSet(attribute.String("target", "user"), attribute.String("method", getUser))
	if got := sums(t, rm, "rampart_client_hedges_total")[key]; got != 1 {
		t.Errorf("rampart_client_hedges_total = %d, want 1", got)
	}
}

func TestHedgingConfigValidate(t *testing.T) {
	tests := []struct {
		c    retry.HedgingConfig
		want string
	}{
		{retry.DefaultHedgingConfig(), ""},
		{retry.HedgingConfig{Delay: 50 * time.Millisecond, MaxAttempts: 5}, ""},
		{retry.HedgingConfig{Delay: -time.Millisecond, MaxAttempts: 2}, "delay: must be >= 0 (0: no hedging), got -1ms"},
		{retry.HedgingConfig{Delay: time.Millisecond, MaxAttempts: 1}, "max_attempts: must be between 2 and 5, got 1"},
		{retry.HedgingConfig{Delay: time.Millisecond, MaxAttempts: 6}, "max_attempts: must be between 2 and 5, got 6"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if got := errString(err); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.c, got, tt.want)
		}
	}
	if retry.DefaultHedgingConfig().Enabled() {
		t.Error("hedging is on by default")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && len(j.Unwrap()) == 1 {
		return j.Unwrap()[0].Error()
	}
	return err.Error()
}
