//go:build !wasip1

package fakehost

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var update = flag.Bool("update-vectors", false, "rewrite sdk/go/internal/hostcall/testdata/vectors.json from the SDK's encoders")

// Vector is one guest submission of the shared vectors file: the host's provider tests decode
// each one and check its fields, so the SDK's encoders and the host's decoders cannot drift apart.
type Vector struct {
	Provider uint32 `json:"provider"`
	Payload  string `json:"payload"` // hex
}

// VectorsFile is the path of the shared vectors file.
func VectorsFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "vectors.json")
}

// CheckVector fails t unless the vector name holds provider and payload. With -update-vectors it
// records them instead (run one package at a time: go test -p 1).
func CheckVector(t testing.TB, name string, provider uint32, payload []byte) {
	t.Helper()
	vs := map[string]Vector{}
	data, err := os.ReadFile(VectorsFile())
	if err == nil {
		err = json.Unmarshal(data, &vs)
	}
	if err != nil && !(*update && os.IsNotExist(err)) {
		t.Fatalf("cannot read vectors: %v", err)
	}
	got := Vector{Provider: provider, Payload: hex.EncodeToString(payload)}
	if *update {
		vs[name] = got
		out, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(VectorsFile(), append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want, ok := vs[name]; !ok || want != got {
		t.Errorf("vector %q: encoded %+v; the vectors file has %+v (rerun with -update-vectors if the encoding changed on purpose)", name, got, want)
	}
}
