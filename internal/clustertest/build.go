package clustertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// module is the module whose cmd/gatehouse BuildGatehouse builds.
const module = "github.com/gatehouse/gatehouse"

var build struct {
	once sync.Once
	path string
	err  error
}

// BuildGatehouse builds cmd/gatehouse, once per test process and with -race if the test binary has it, and
// returns the binary's path. The binary outlives the test process: the next one to build removes it.
func BuildGatehouse(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildGatehouse() })
	if build.err != nil {
		t.Fatalf("clustertest: build gatehouse: %v", build.err)
	}
	return build.path
}

func buildGatehouse() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := tempDir("clustertest-gatehouse-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gatehouse")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/gatehouse")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of this module's go.mod, the nearest above the working directory.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if m := modulePath(b); m != module {
				return "", fmt.Errorf("the go.mod nearest above %s is module %q, not %s", wd, m, module)
			}
			return dir, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// modulePath returns the module path a go.mod file declares.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
