package scaffold

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	userv1 "github.com/rampart-go/rampart/api/user/v1"
	"github.com/rampart-go/rampart/cmd/devstack/demo"
	"github.com/rampart-go/rampart/internal/conf"
	"github.com/rampart-go/rampart/internal/devstack"
	"github.com/rampart-go/rampart/internal/devstack/devstacktest"
	"github.com/rampart-go/rampart/internal/middleware"
)

const (
	newName    = "payment"
	newService = "payment.v1.PaymentService"
	newMethod  = "/payment.v1.PaymentService/CreatePayment"
)

// TestNewServiceRunsWithConsul scaffolds a service in a copy, then runs it
// as a user would: built from the copy, registered in a real Consul agent,
// called by address through reflection (no generated code on this side),
// called through discovery:///payment with the client chain, the way
// another service would call it, and called over HTTP/JSON through the
// gateway it advertises in Consul, the way curl would. Its example method
// calls user, so one user instance runs too.
func TestNewServiceRunsWithConsul(t *testing.T) {
	ctx := devstacktest.Context(t, 12*time.Minute)
	dir := copyRepo(t, ctx)

	before := treeHash(t, dir)
	for _, bad := range []string{"user", "Pay-Ment", "func"} {
		out, err := tryRun(ctx, dir, "make", "--no-print-directory", "new-service", "NAME="+bad)
		if err == nil || !strings.Contains(out, "service name") {
			t.Errorf("make new-service NAME=%s: err=%v, want a refusal naming the service name:\n%s", bad, err, out)
		}
	}
	unchanged(t, "a refused new-service", before, treeHash(t, dir))

	run(t, ctx, dir, "make", "--no-print-directory", "new-service", "NAME="+newName)
	run(t, ctx, dir, "go", "vet", "./...")
	run(t, ctx, dir, "go", "test", "-count=1", "./internal/biz/...", "./internal/data/...", "./internal/service/...", "./api/...")
	// The new service has a package of its own in each layer and links no
	// other service's domain.
	deps := strings.Fields(run(t, ctx, dir, "go", "list", "-deps", "./cmd/"+newName))
	for _, layer := range []string{"biz", "data", "service"} {
		if own := devstack.RepoModulePath + "/internal/" + layer + "/" + newName; !slices.Contains(deps, own) {
			t.Errorf("cmd/%s does not link %s", newName, own)
		}
		for _, other := range []string{"user", "order"} {
			if theirs := devstack.RepoModulePath + "/internal/" + layer + "/" + other; slices.Contains(deps, theirs) {
				t.Errorf("cmd/%s links %s, another service's package", newName, theirs)
			}
		}
	}
	// What CI checks on every commit holds for the new service too.
	run(t, ctx, dir, "make", "--no-print-directory", "check-generated")
	run(t, ctx, dir, "make", "--no-print-directory", "buf-check")
	if out := run(t, ctx, dir, "make", "-n", "build"); !strings.Contains(out, " "+newName+" ") {
		t.Errorf("make build does not build %s:\n%s", newName, out)
	}
	if names, err := devstack.Services(dir); err != nil || !slices.Contains(names, newName) {
		t.Errorf("make run's services: %v, %v; want %s among them", names, err, newName)
	}

	isolateConsul(t)
	s := devstacktest.Stack(t, ctx, devstack.StackConfig{
		RepoRoot: dir,
		Services: []devstack.ServiceCount{{Name: demo.UserService, Instances: 1}, {Name: newName, Instances: 2}},
	})
	entries, _, err := s.Client.Health().Service(newName, "", true, nil)
	if err != nil || len(entries) != 2 {
		t.Fatalf("passing %s instances in Consul: %d, %v; want 2", newName, len(entries), err)
	}

	users := userClient(t, s)
	owner, err := users.CreateUser(ctx, &userv1.CreateUserRequest{Name: "Ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ownerID := owner.GetUser().GetId()

	// By address, through reflection, as grpcurl would.
	instances := s.Instances(newName)
	certs := devstacktest.Certificates(t, s)
	r, err := devstack.Reflect(ctx, instances[0].GRPCAddr, newService, devstacktest.Credentials(certs, newName))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Services, newService) {
		t.Fatalf("reflection lists %v, want %s", r.Services, newService)
	}
	d, err := r.Files.FindDescriptorByName(protoreflect.FullName(newService + ".CreatePayment"))
	if err != nil {
		t.Fatal(err)
	}
	method := d.(protoreflect.MethodDescriptor)
	if opts, _ := method.Options().(*descriptorpb.MethodOptions); opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_IDEMPOTENT {
		t.Errorf("CreatePayment idempotency_level = %v, want IDEMPOTENT", opts.GetIdempotencyLevel())
	}
	direct := devstacktest.DialAddr(t, certs, instances[0].GRPCAddr, newName)
	id := uuid.NewString()
	for i, wantCreated := range []bool{true, false} {
		reply, callErr := createPayment(ctx, direct, method, id, ownerID, "first")
		if callErr != nil {
			t.Fatalf("call %d by address: %v", i+1, callErr)
		}
		if got := reply.Get(method.Output().Fields().ByName("created")).Bool(); got != wantCreated {
			t.Errorf("call %d: created = %v, want %v (same ID and body)", i+1, got, wantCreated)
		}
	}
	_, err = createPayment(ctx, direct, method, id, ownerID, "other")
	expectReason(t, "same ID, other body", err, codes.AlreadyExists, "ID_CONFLICT")
	_, err = createPayment(ctx, direct, method, uuid.NewString(), uuid.NewString(), "x")
	expectReason(t, "unknown owner (asked of user)", err, codes.NotFound, "OWNER_NOT_FOUND")
	_, err = createPayment(ctx, direct, method, "not-a-uuid", ownerID, "x")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "id") {
		t.Errorf("bad id: %v, want InvalidArgument naming the field", err)
	}

	// Through Consul, with the client chain, as another service would.
	conn := dialDiscovery(t, s, newName)
	const calls = 40
	for i := range calls {
		if _, callErr := createPayment(ctx, conn, method, uuid.NewString(), ownerID, fmt.Sprintf("call %d", i)); callErr != nil {
			t.Fatalf("call %d through discovery:///%s: %v", i, newName, callErr)
		}
	}
	for _, p := range instances {
		m, scrapeErr := devstack.Scrape(ctx, p.HTTPAddr)
		if scrapeErr != nil {
			t.Fatal(scrapeErr)
		}
		served := m.Sum("rpc_server_call_duration_seconds_count", newService+"/CreatePayment")
		t.Logf("instance %s served %.0f CreatePayment calls", p.GRPCAddr, served)
		if served == 0 {
			t.Errorf("instance %s served no call: discovery did not spread the calls over both instances", p.GRPCAddr)
		}
	}

	// Over HTTP/JSON, through the routes the proto declares, at the gateway
	// address the instance advertises in Consul.
	gateway := "http://" + entries[0].Service.Meta["gateway"]
	if gateway == "http://" {
		t.Fatalf("%s instance %s advertises no gateway in its Consul metadata %v", newName, entries[0].Service.ID, entries[0].Service.Meta)
	}
	list, err := r.Files.FindDescriptorByName(protoreflect.FullName(newService + ".ListPayments"))
	if err != nil {
		t.Fatal(err)
	}
	listMethod := list.(protoreflect.MethodDescriptor)
	httpID := uuid.NewString()
	created := gatewayCall(t, ctx, http.MethodPost, gateway+"/v1/payments",
		`{"id": "`+httpID+`", "userId": "`+ownerID+`", "description": "over HTTP"}`, http.StatusOK)
	reply := decodeReply(t, created, method.Output())
	payment := reply.Get(method.Output().Fields().ByName(newName)).Message()
	if got := payment.Get(payment.Descriptor().Fields().ByName("id")).String(); got != httpID ||
		!reply.Get(method.Output().Fields().ByName("created")).Bool() {
		t.Errorf("POST /v1/payments: %s, want payment %s created", created, httpID)
	}

	// Page parameters travel as query parameters: a page of one has a
	// token, and the whole list ends with the record just created (each
	// instance keeps its own records in memory, and this gateway calls its
	// own instance, which stored it).
	listURL := gateway + "/v1/users/" + ownerID + "/payments"
	records := listMethod.Output().Fields().ByName(newName + "s")
	page := decodeReply(t, gatewayCall(t, ctx, http.MethodGet, listURL+"?pageSize=1", "", http.StatusOK), listMethod.Output())
	if n, next := page.Get(records).List().Len(), page.Get(listMethod.Output().Fields().ByName("next_page_token")).String(); n != 1 || next == "" {
		t.Errorf("GET %s?pageSize=1: %d records, next_page_token %q; want 1 and a token", listURL, n, next)
	}
	all := decodeReply(t, gatewayCall(t, ctx, http.MethodGet, listURL+"?pageSize=1000", "", http.StatusOK), listMethod.Output()).Get(records).List()
	if all.Len() == 0 {
		t.Fatalf("GET %s: no records", listURL)
	}
	if last := all.Get(all.Len() - 1).Message(); last.Get(last.Descriptor().Fields().ByName("id")).String() != httpID {
		t.Errorf("GET %s: the last of %d records is %v, want %s, created last", listURL, all.Len(), last, httpID)
	}

	// A rule of the proto refuses a blank description before the handler,
	// as a 400 whose JSON names the field.
	refused := gatewayCall(t, ctx, http.MethodPost, gateway+"/v1/payments",
		`{"id": "`+uuid.NewString()+`", "userId": "`+ownerID+`", "description": "   "}`, http.StatusBadRequest)
	var refusal struct{ Reason, Field string }
	if err := json.Unmarshal(refused, &refusal); err != nil || refusal.Reason != "INVALID_ARGUMENT" || refusal.Field != "description" {
		t.Errorf("POST /v1/payments with a blank description: %s, want reason INVALID_ARGUMENT and field description (docs/http.md)", refused)
	}
}

// gatewayCall sends body (JSON, or nothing when empty) to url and returns
// the response body, failing the test unless the status is want and the
// body is JSON.
func gatewayCall(t *testing.T, ctx context.Context, method, url, body string, want int) []byte {
	t.Helper()
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s %s, want %d", method, url, resp.Status, got, want)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || !json.Valid(got) {
		t.Fatalf("%s %s: Content-Type %q, body %s; want JSON", method, url, ct, got)
	}
	return got
}

// decodeReply reads a gateway's JSON body as the reply message it carries,
// whichever field names (JSON or proto) the gateway writes.
func decodeReply(t *testing.T, body []byte, desc protoreflect.MessageDescriptor) *dynamicpb.Message {
	t.Helper()
	m := dynamicpb.NewMessage(desc)
	if err := protojson.Unmarshal(body, m); err != nil {
		t.Fatalf("%s as %s: %v", body, desc.FullName(), err)
	}
	return m
}

func createPayment(ctx context.Context, conn grpc.ClientConnInterface, method protoreflect.MethodDescriptor, id, userID, description string) (*dynamicpb.Message, error) {
	req := dynamicpb.NewMessage(method.Input())
	fields := method.Input().Fields()
	req.Set(fields.ByName("id"), protoreflect.ValueOfString(id))
	req.Set(fields.ByName("user_id"), protoreflect.ValueOfString(userID))
	req.Set(fields.ByName("description"), protoreflect.ValueOfString(description))
	reply := dynamicpb.NewMessage(method.Output())
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return reply, conn.Invoke(callCtx, newMethod, req, reply)
}

func expectReason(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || kerrors.Reason(err) != reason {
		t.Errorf("%s: %v (reason %q), want %v with reason %s", what, err, kerrors.Reason(err), code, reason)
	}
}

// dialDiscovery dials discovery:///name through the stack's Consul with the
// client chain every Rampart service uses on its peers.
func dialDiscovery(t *testing.T, s *devstack.Stack, name string) *grpc.ClientConn {
	t.Helper()
	c := conf.Default()
	cl := middleware.DefaultClientConfig()
	cl.Target = "discovery:///" + name
	c.Clients = middleware.ClientConfigs{name: cl}
	return devstacktest.Dial(t, s, c, name)
}

func userClient(t *testing.T, s *devstack.Stack) userv1.UserServiceClient {
	t.Helper()
	return userv1.NewUserServiceClient(dialDiscovery(t, s, demo.UserService))
}
