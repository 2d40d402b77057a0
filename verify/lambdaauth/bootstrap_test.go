package lambdaauth_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExampleBootstrap builds the example as a provided.al2023 runtime would run it (an executable named bootstrap,
// built with -tags lambda.norpc) and runs it against a stand-in for the Lambda Runtime API, which hands it events
// and collects its answers.
func TestExampleBootstrap(t *testing.T) {
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bootstrap, "./example")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	is := newIssuer(t)

	type answer struct{ id, kind, body string }
	next := make(chan [2]string) // request id, event
	answers := make(chan answer, 10)
	const prefix = "/2018-06-01/runtime/"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch path := strings.TrimPrefix(r.URL.Path, prefix); {
		case r.Method == "GET" && path == "invocation/next":
			select {
			case ev := <-next:
				h := w.Header()
				h.Set("Lambda-Runtime-Aws-Request-Id", ev[0])
				h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
				h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:authorizer")
				h.Set("Lambda-Runtime-Trace-Id", "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e")
				io.WriteString(w, ev[1])
			case <-r.Context().Done():
			}
		case r.Method == "POST" && strings.HasPrefix(path, "invocation/"):
			id, kind, _ := strings.Cut(strings.TrimPrefix(path, "invocation/"), "/")
			answers <- answer{id, kind, string(body)}
			w.WriteHeader(http.StatusAccepted)
		case r.Method == "POST" && path == "init/error":
			answers <- answer{"", "init/error", string(body)}
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()

	cmd := exec.Command(bootstrap)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(api.URL, "http://"),
		"ISSUER="+is.url+"/", "AUDIENCE="+audience, "JWKS_URI="+is.url+"/.well-known/jwks.json", "AUTHORIZER_TYPE=TOKEN")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	invoke := func(id, authz string) answer {
		t.Helper()
		var e map[string]any
		event(t, "token-event.json", authz, &e)
		b, _ := json.Marshal(e)
		select {
		case next <- [2]string{id, string(b)}:
		case <-time.After(10 * time.Second):
			t.Fatalf("the bootstrap did not ask for an event within 10s; stderr:\n%s", &stderr)
		}
		select {
		case a := <-answers:
			return a
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to %s within 10s; stderr:\n%s", id, &stderr)
		}
		return answer{}
	}

	a := invoke("req-1", "Bearer "+is.sign(nil))
	want := fmt.Sprintf(`{"principalId":"svc-one","policyDocument":{"Version":"2012-10-17","Statement":[{"Action":["execute-api:Invoke"],"Effect":"Allow","Resource":[%q]}]},"context":{"client_id":"svc-one","scope":"read write","sub":"svc-one"}}`, wildcard)
	if a.id != "req-1" || a.kind != "response" || a.body != want {
		t.Errorf("valid token: %s %s %s\nwant req-1 response %s", a.id, a.kind, a.body, want)
	}
	a = invoke("req-2", "Bearer InvalidToken")
	var lambdaErr struct{ ErrorMessage string }
	json.Unmarshal([]byte(a.body), &lambdaErr)
	if a.id != "req-2" || a.kind != "error" || lambdaErr.ErrorMessage != "Unauthorized" {
		t.Errorf("invalid token: %s %s %s; want req-2 error with errorMessage Unauthorized", a.id, a.kind, a.body)
	}
}
