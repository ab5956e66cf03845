package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestWebhookMetrics lints the webhook's metrics after each has a sample
// and checks the pre-created label values and the nil receiver
// (TestDocsComplete checks docs/metrics.md).
func TestWebhookMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewWebhook(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range Admissions() {
		if v := testutil.ToFloat64(m.admissions.WithLabelValues(string(a))); v != 0 {
			t.Errorf("%s = %v before any admission", a, v)
		}
	}
	m.Admission(AdmissionInjected, 3*time.Millisecond)
	m.Refused(RefusedBusy)
	m.AddInFlight(2)
	m.AddInFlight(-1)
	m.AddConnections(1)
	m.SetCertificateExpiry(time.Unix(1700000000, 0))
	m.SetCAPublished(true)
	if v := testutil.ToFloat64(m.admissions.WithLabelValues(string(AdmissionInjected))); v != 1 {
		t.Errorf("injected = %v", v)
	}
	if v := testutil.ToFloat64(m.inflight); v != 1 {
		t.Errorf("in flight = %v", v)
	}
	if v := testutil.ToFloat64(m.published); v != 1 {
		t.Errorf("published = %v", v)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var nilM *Webhook
	nilM.Admission(AdmissionError, time.Second)
	nilM.Refused(RefusedTooLarge)
	nilM.AddInFlight(1)
	nilM.AddConnections(1)
	nilM.SetCertificateExpiry(time.Now())
	nilM.SetCAPublished(false)
}
