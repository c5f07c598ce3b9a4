package chaos

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	orderv1 "github.com/rampart-go/rampart/api/order/v1"
)

// OrderCalls places orders with unique idempotency keys through the given
// clients, in turn, and records the id of every acknowledged order and the
// key of every failed call, for a count in the database afterwards
// (StoredOrders): no acknowledged order lost, none stored twice.
type OrderCalls struct {
	clients []orderv1.OrderServiceClient
	buyer   string
	next    chan int
	acked   chan string
	failed  chan string
}

// NewOrderCalls places buyer's orders through clients.
func NewOrderCalls(buyer string, clients ...orderv1.OrderServiceClient) *OrderCalls {
	oc := &OrderCalls{clients: clients, buyer: buyer, next: make(chan int, 1), acked: make(chan string, 1<<16), failed: make(chan string, 1<<16)}
	oc.next <- 0
	return oc
}

// Call places one order, a Load's Call.
func (oc *OrderCalls) Call(ctx context.Context) error { return oc.CallWith(ctx) }

// CallWith is Call with call options (e.g. grpc.Peer, to see where it went).
func (oc *OrderCalls) CallWith(ctx context.Context, opts ...grpc.CallOption) error {
	i := <-oc.next
	oc.next <- i + 1
	key := uuid.NewString()
	reply, err := oc.clients[i%len(oc.clients)].CreateOrder(ctx, oc.Request(key), opts...)
	// Beyond 65k calls of either kind the run is not bounded as it should
	// be; the record stops growing rather than blocking the call.
	if err == nil {
		select {
		case oc.acked <- reply.GetOrder().GetId():
		default:
		}
	} else {
		select {
		case oc.failed <- key:
		default:
		}
	}
	return err
}

// Request is the body every call sends, with its key.
func (oc *OrderCalls) Request(key string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{IdempotencyKey: key, UserId: oc.buyer, Item: "pen", Quantity: 1}
}

// AckedIDs drains the ids of the acknowledged orders.
func (oc *OrderCalls) AckedIDs() []string { return drain(oc.acked) }

// FailedKeys drains the keys of the calls that failed.
func (oc *OrderCalls) FailedKeys() []string { return drain(oc.failed) }

func drain(c chan string) []string {
	var out []string
	for {
		select {
		case s := <-c:
			out = append(out, s)
		default:
			return out
		}
	}
}

// Stored is what the order database holds for one buyer.
type Stored struct {
	Orders int            // rows in orders
	Keyed  int            // of those, the ones an idempotency key points at
	IDs    map[string]int // rows per order id
}

// StoredOrders reads the order tables of the database at dsn directly,
// independent of the service's list and its paging.
func StoredOrders(ctx context.Context, dsn, buyer string) (Stored, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return Stored{}, fmt.Errorf("read orders: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, `SELECT o.id, k.key IS NOT NULL FROM orders o LEFT JOIN idempotency_keys k ON k.order_id = o.id WHERE o.user_id = $1`, buyer)
	if err != nil {
		return Stored{}, fmt.Errorf("read orders: %w", err)
	}
	st := Stored{IDs: map[string]int{}}
	for rows.Next() {
		var id string
		var keyed bool
		if err = rows.Scan(&id, &keyed); err != nil {
			return Stored{}, fmt.Errorf("read orders: %w", err)
		}
		st.Orders++
		st.IDs[id]++
		if keyed {
			st.Keyed++
		}
	}
	if err = rows.Err(); err != nil {
		return Stored{}, fmt.Errorf("read orders: %w", err)
	}
	return st, nil
}

// Verify holds st against the ids of the acknowledged orders: each stored
// once, as many orders as ids, each order with its idempotency key. It
// returns how many ids are missing and how many stored twice, and a
// sentence per breach.
func (st Stored) Verify(acked []string) (missing, twice int, breaches []string) {
	for _, id := range acked {
		switch st.IDs[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		breaches = append(breaches, fmt.Sprintf("of %d acknowledged orders, %d are not in the database and %d are there more than once", len(acked), missing, twice))
	}
	if st.Orders != len(acked) {
		breaches = append(breaches, fmt.Sprintf("%d orders in the database for %d keys acknowledged: an order was lost or duplicated", st.Orders, len(acked)))
	}
	if st.Keyed != st.Orders {
		breaches = append(breaches, fmt.Sprintf("%d orders in the database, %d of them with an idempotency key: an order was created twice for one key", st.Orders, st.Keyed))
	}
	return missing, twice, breaches
}
