// Package leakcheck runs a package's tests under goleak with the one known
// exception every Rampart binary has: aegis' CPU sampler, which load
// shedding reads, starts at package init and runs for the life of the
// process. Any test binary that links the middleware chain has it.
package leakcheck

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Options are goleak's options with the aegis sampler ignored.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/go-kratos/aegis/internal/cpu.init.0.func1"),
		goleak.IgnoreTopFunction("github.com/go-kratos/aegis/ratelimit/bbr.cpuproc"),
	}
}

// Main is TestMain for a package whose tests must leave no goroutine behind.
func Main(m *testing.M) {
	goleak.VerifyTestMain(m, Options()...)
}

// Run runs m's tests and, if they passed, checks that they left no
// goroutine behind; it returns the exit code, for a TestMain that has
// more to do after the tests (a report, a teardown) than Main allows.
func Run(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(Options()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}
