package idempotency

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkCanonicalJSON measures the canonical form of a charge request as
// clients send it (keys out of order) and as it is already canonical.
func BenchmarkCanonicalJSON(b *testing.B) {
	for name, body := range map[string]string{
		"unsorted":  chargeRequestBody,
		"canonical": string(canonicalJSON([]byte(chargeRequestBody))),
		"escaped":   `{"description":"Caf\u00e9 \"456\"","amount":2000,"metadata":{"z":"1","a":"caf\u00e9"}}`,
	} {
		b.Run(name, func(b *testing.B) {
			in := []byte(body)
			b.ReportAllocs()
			for b.Loop() {
				canonicalJSON(in)
			}
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	r := httptest.NewRequest("POST", "/v1/charges", strings.NewReader(chargeRequestBody))
	body := []byte(chargeRequestBody)
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(r, body)
	}
}

const chargeRequestBody = `{"amount":2000,"currency":"usd","payment_method":"tok_visa","description":"Invoice 456","metadata":{"order":"456"}}`

// Objects whose members must be reordered, nested in others that must be
// too, with repeated keys at every level and strings on every path.
func TestCanonicalJSONReordersNestedObjects(t *testing.T) {
	for _, s := range []string{
		`{"z":{"y":1,"x":{"b":[{"d":1,"c":2,"d":3}],"a":"\u00e9"},"y":2},"a":[{"b":1,"a":2}],"z":{"q":1,"p":"\"x\""}}`,
		`{"b":{"b":{"b":1,"a":1},"a":1},"a":{"b":{"b":1,"a":1},"a":1}}`,
		`{"\u0062":1,"a":2,"b":3,"\u0061":4}`,
		`{"é":1,"e":2,"\u00e9":3}`,
		`[{"b":1,"a":2},{"a":1},{"c":{"b":"\ud83d\ude00","a":"x"},"a":null}]`,
		`{"b":"` + strings.Repeat("x", 300) + `","a":"` + strings.Repeat("\\n", 200) + `"}`,
	} {
		if got, want := string(canonicalJSON([]byte(s))), string(referenceCanonical([]byte(s))); got != want {
			t.Errorf("canonicalJSON(%s)\n got %s\nwant %s", s, got, want)
		}
	}
}
