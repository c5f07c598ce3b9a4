package consul

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// What a token lacks when the agent refuses (403) or filters (an empty
// answer marked X-Consul-Results-Filtered-By-ACLs), named in the logs so
// an operator knows which rule to add to the policy. An unknown token is
// refused with 403 too ("ACL not found"): the hint then still names what
// it would need.
func needWrite(service string) string { return "the ACL token needs service:write on " + service }

func needRead(service string) string {
	return "the ACL token needs service:read on " + service + " and node:read on its nodes (node_prefix \"\" read)"
}

// explain403 adds what the ACL token lacks to a 403 from the agent.
func explain403(err error, hint string) error {
	if isForbidden(err) {
		return fmt.Errorf("%s: %w", hint, err)
	}
	return err
}

// isForbidden reports a 403 from the agent: the ACL token lacks a
// permission, or the agent does not know it. An operator can fix either
// without restarting the instance, so callers retry.
func isForbidden(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden
}
