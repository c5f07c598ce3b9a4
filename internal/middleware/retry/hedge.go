package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kratos/kratos/v2/selector"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rampart-go/rampart/internal/rpc"
)

// HedgingConfig is one method's hedging policy, the hedging block of a
// method override in the config file (gRPC A6's hedgingPolicy). A method
// is hedged when Delay > 0; a hedged method is not retried, as A6 makes a
// method's retry and hedging policies exclusive.
type HedgingConfig struct {
	// Delay is how long an attempt may go unanswered before the next one
	// is sent to another instance; 0 turns hedging off.
	Delay time.Duration `yaml:"delay"`
	// MaxAttempts is the most attempts of one call, the first included.
	MaxAttempts int `yaml:"max_attempts"`
}

// DefaultHedgingConfig is hedging off, with room for one hedge once a
// delay is set.
func DefaultHedgingConfig() HedgingConfig {
	return HedgingConfig{MaxAttempts: 2}
}

// Enabled reports whether the policy hedges.
func (c HedgingConfig) Enabled() bool { return c.Delay > 0 }

// Validate reports every invalid field, each as "key: reason".
func (c HedgingConfig) Validate() error {
	var errs []error
	if c.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay: must be >= 0 (0: no hedging), got %v", c.Delay))
	}
	if c.MaxAttempts < 2 || c.MaxAttempts > maxMaxAttempts {
		errs = append(errs, fmt.Errorf("max_attempts: must be between 2 and %d, got %d", maxMaxAttempts, c.MaxAttempts))
	}
	return errors.Join(errs...)
}

// WithHedging gives the interceptor the hedging policy of each method;
// without it no method is hedged and a call pays nothing for hedging. A
// method is hedged only if its policy is enabled and its proto declares it
// NO_SIDE_EFFECTS.
func WithHedging(hedgingFor func(method string) HedgingConfig) Option {
	return func(o *options) { o.hedgingFor = hedgingFor }
}

// hedgeResult is what one attempt of a hedged call ends with.
type hedgeResult struct {
	attempt *hedgeAttempt
	err     error
}

// hedgeAttempt is one attempt of a hedged call: its own reply (attempts
// run at once, so they cannot share the caller's), trailer, balancer peer
// and call options.
type hedgeAttempt struct {
	n       int
	reply   any
	trailer metadata.MD
	peer    selector.Peer
	opts    []grpc.CallOption
}

// hedge makes a hedged call, gRPC A6's hedging: the first attempt now, the
// next when the latest has gone unanswered for h.Delay, each to an instance
// no earlier attempt went to, each paid with a retry budget token, up to
// h.MaxAttempts. The first success wins and the rest are cancelled. An
// attempt that fails with a transient code (A6's non-fatal codes) lets the
// next go at once, or after the wait its pushback asks for; a pushback
// that says stop, an exhausted budget or no untried instance sends no more.
// A failure that is not transient ends the call with its error. The call
// returns once every attempt it started has ended, so no attempt outlives
// it.
func (r *retrier) hedge(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption, h HedgingConfig) error {
	msg, ok := reply.(proto.Message)
	if !ok {
		// A reply gRPC's codec could not unmarshal either; never the case
		// for generated clients.
		return invoker(rpc.WithAttempt(ctx, 1), method, req, reply, cc, opts...)
	}
	r.budget.Request()
	t := &tried{hedging: true}
	callCtx, cancel := context.WithCancel(context.WithValue(ctx, triedKey{}, t))
	defer cancel()
	results := make(chan hedgeResult, h.MaxAttempts)
	launch := func(n int) {
		a := &hedgeAttempt{n: n, reply: msg}
		if n > 1 {
			a.reply = msg.ProtoReflect().New().Interface()
		}
		a.opts = append(append(make([]grpc.CallOption, 0, len(opts)+1), opts...), grpc.Trailer(&a.trailer))
		// A peer of its own: Kratos' selector writes the pick into the
		// one it finds in the context, and attempts pick at once.
		actx := selector.NewPeerContext(rpc.WithAttempt(callCtx, n), &a.peer)
		go func() {
			results <- hedgeResult{attempt: a, err: invoker(actx, method, req, a.reply, cc, a.opts...)}
		}()
	}

	launch(1)
	sent, running := 1, 1
	more := true // another hedge may still be sent
	timer := time.NewTimer(h.Delay)
	defer timer.Stop()
	var last error
	done := ctx.Done()
	for running > 0 || more {
		var fire <-chan time.Time
		if more {
			fire = timer.C
		}
		select {
		case res := <-results:
			running--
			if res.err == nil {
				cancel()
				r.drain(results, running)
				return r.won(ctx, res.attempt, msg)
			}
			last = res.err
			if !rpc.Classify(ctx, res.err).Transient {
				// A6: a fatal code ends the call, hedges in flight
				// cancelled.
				cancel()
				r.drain(results, running)
				return res.err
			}
			wait, pushedBack, ok := rpc.Pushback(res.attempt.trailer)
			switch {
			case !ok:
				more = false // A6: a pushback that says stop ends hedging
			case pushedBack:
				timer.Reset(wait)
			default:
				timer.Reset(0) // A6: a non-fatal failure lets the next go at once
			}
		case <-fire:
			if sent >= h.MaxAttempts || ctx.Err() != nil {
				more = false
				continue
			}
			if untried, known := t.untried(); !untried {
				if known {
					more = false // every instance offered has an attempt
				} else {
					timer.Reset(h.Delay) // the first attempt has not been placed yet
				}
				continue
			}
			if !r.budget.TryRetry() {
				r.exhausted.Add(ctx, 1, r.targetSet)
				more = false
				continue
			}
			sent++
			running++
			r.recordHedge(ctx, method, sent)
			launch(sent)
			timer.Reset(h.Delay)
		case <-done:
			// The attempts in flight end with the context.
			more, done = false, nil
		}
	}
	return last
}

// drain waits for the n attempts still running, already cancelled.
func (r *retrier) drain(results <-chan hedgeResult, n int) {
	for ; n > 0; n-- {
		<-results
	}
}

// won hands the winning attempt's reply and balancer pick to the caller:
// every attempt has ended, so nothing else writes them.
func (r *retrier) won(ctx context.Context, a *hedgeAttempt, msg proto.Message) error {
	if a.n > 1 {
		proto.Reset(msg)
		proto.Merge(msg, a.reply.(proto.Message))
	}
	if p, ok := selector.FromPeerContext(ctx); ok {
		p.Node = a.peer.Node
	}
	return nil
}

// recordHedge emits the span event and the counter of one hedge.
func (r *retrier) recordHedge(ctx context.Context, method string, attempt int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("hedge", trace.WithAttributes(attribute.Int("rampart.hedge.attempt", attempt)))
	}
	r.hedges.Add(ctx, 1, metric.WithAttributes(
		attribute.String("target", r.target),
		attribute.String("method", method),
	))
}
