package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignStandard returns the webhook-signature header value for payload sent
// as event id at t, v1,<base64> with one signature per secret, in order,
// separated by spaces, as Standard Webhooks signs while a secret is
// rotated. The sender sets it with webhook-id: id and webhook-timestamp:
// t's Unix seconds. It refuses an id that a [Verifier] would refuse.
func SignStandard(id string, t time.Time, payload []byte, secrets ...string) (string, error) {
	if err := checkStandardID(id); err != nil {
		return "", err
	}
	keys, err := decodeSecrets(StandardWebhooks, secrets)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, key := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(standardMAC(key, id, t.Unix(), payload)))
	}
	return b.String(), nil
}

// standardMAC is the v1 signature of Standard Webhooks: HMAC-SHA256 of
// "<id>.<timestamp>.<payload>".
func standardMAC(key []byte, id string, t int64, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	var buf [21]byte
	b := append(buf[:0], '.')
	b = strconv.AppendInt(b, t, 10)
	mac.Write(append(b, '.'))
	mac.Write(payload)
	return mac.Sum(nil)
}

// checkStandardID refuses what [checkID] refuses, and a full stop too: the
// specification says the id should not contain one, since the signed
// content "<id>.<t>.<payload>" would then read two ways, and a signature
// for one event could be passed off as another's.
func checkStandardID(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if strings.Contains(id, ".") {
		return wrap(ErrInvalidID, "the webhook-id holds a full stop")
	}
	return nil
}

// parseStandardSignatures returns the v1 signatures of a webhook-signature
// value: a list separated by spaces of <version>,<signature>, in which
// other versions (v1a, a future one) are ignored, as is a v1 that is not
// standard base64 or an entry without a comma. Each is decoded, so that
// comparing them is comparing bytes.
func parseStandardSignatures(h string) [][]byte {
	var sigs [][]byte
	for _, entry := range strings.Fields(h) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		b, err := base64.StdEncoding.Strict().DecodeString(sig)
		if err != nil {
			continue
		}
		sigs = append(sigs, b)
	}
	return sigs
}

func (v *Verifier) verifyStandard(header http.Header, payload []byte) (Delivery, error) {
	d := Delivery{Scheme: StandardWebhooks}
	sig, err := oneHeader(header, HeaderWebhookSignature)
	if err != nil {
		return d, err
	}
	if sig == "" {
		return d, wrap(ErrNoSignature, "no webhook-signature header")
	}
	id, err := oneHeader(header, HeaderWebhookID)
	if err != nil {
		return d, err
	}
	if id == "" {
		return d, wrap(ErrMissingID, "no webhook-id header")
	}
	if err := checkStandardID(id); err != nil {
		return d, err
	}
	ts, err := oneHeader(header, HeaderWebhookTimestamp)
	if err != nil {
		return d, err
	}
	if ts == "" {
		return d, wrap(ErrMalformedHeader, "no webhook-timestamp header")
	}
	unix, ok := parseTimestamp(ts)
	if !ok {
		return d, wrap(ErrMalformedHeader, "webhook-timestamp is not a Unix time in seconds")
	}
	if d.Timestamp, err = v.checkTime(unix); err != nil {
		return d, err
	}
	sigs := parseStandardSignatures(sig)
	if len(sigs) == 0 {
		return d, wrap(ErrNoMatchingSignature, "webhook-signature holds no v1 signature")
	}
	expected := make([][]byte, len(v.keys))
	for i, key := range v.keys {
		expected[i] = standardMAC(key, id, unix, payload)
	}
	if !match(sigs, expected) {
		return d, noMatch(len(sigs), len(v.keys))
	}
	d.ID = id
	return d, nil
}
