package mock

import "strings"

// iso4217 lists the circulating currencies of ISO 4217, lower case and
// space separated. Funds codes (such as CLF), precious metals (XAU) and the
// testing codes (XTS, XXX) are left out: nobody charges a card in them.
const iso4217 = "aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl " +
	"bsd btn bwp byn bzd cad cdf chf clp cny cop crc cuc cup cve czk djf dkk dop dzd " +
	"egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils " +
	"inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd " +
	"lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok " +
	"npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek " +
	"sgd shp sle sll sos srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs " +
	"uah ugx usd uyu uzs ved ves vnd vuv wst xaf xcd xcg xof xpf yer zar zmw zwg zwl"

// currencyCode returns c in lower case if it is a circulating ISO 4217
// code, in either case.
func currencyCode(c string) (string, bool) {
	if len(c) != 3 {
		return "", false
	}
	var b [3]byte
	for i := range 3 {
		ch := c[i] | 0x20 // ASCII lower case; other bytes fail the check below
		if ch < 'a' || ch > 'z' {
			return "", false
		}
		b[i] = ch
	}
	// Every code is three letters between spaces, and a match cannot span
	// a space, so a hit is always a whole code.
	i := strings.Index(iso4217, string(b[:]))
	if i < 0 {
		return "", false
	}
	// The list's own copy: no allocation, and a charge that keeps it
	// does not keep the request body it came in.
	return iso4217[i : i+3], true
}
