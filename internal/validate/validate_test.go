package validate_test

import (
	"errors"
	"testing"

	"github.com/rampart-go/rampart/internal/validate"
)

func TestPageSize(t *testing.T) {
	for _, tc := range []struct {
		size    int32
		invalid bool
	}{
		{-1, true},
		{0, false}, // the server's default
		{50, false},
		{1 << 30, false}, // lowered to the maximum by the server, not refused
	} {
		err := validate.PageSize("page_size", tc.size)
		if fe, ok := errors.AsType[*validate.FieldError](err); (err != nil) != tc.invalid || (ok && fe.Field != "page_size") {
			t.Errorf("PageSize(%d) = %v, want invalid=%v naming page_size", tc.size, err, tc.invalid)
		}
	}
}
