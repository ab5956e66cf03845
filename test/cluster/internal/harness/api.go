package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// api is a minimal client of the cluster's kube-apiserver as the admin
// user, enough to wait for readiness without client-go.
type api struct {
	base   string
	client *http.Client
}

func (c *Config) api() (*api, error) {
	dir := c.path("pki")
	cert, err := tls.LoadX509KeyPair(dir+"/admin.crt", dir+"/admin.key")
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(dir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
		Proxy:           nil, // loopback only, whatever HTTPS_PROXY says
	}
	return &api{
		base:   fmt.Sprintf("https://127.0.0.1:%d", c.APIPort),
		client: &http.Client{Transport: tr, Timeout: 5 * time.Second},
	}, nil
}

// get fetches path; into may be nil. It returns the HTTP status.
func (a *api) get(ctx context.Context, path string, into any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if into != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, into); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// nodeReady says whether the node is Ready, and why not.
func (a *api) nodeReady(ctx context.Context, node string) (bool, string, error) {
	var n struct {
		Status struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	code, err := a.get(ctx, "/api/v1/nodes/"+node, &n)
	if err != nil {
		return false, "", err
	}
	if code != http.StatusOK {
		return false, fmt.Sprintf("node %s not registered (HTTP %d)", node, code), nil
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True", c.Reason + ": " + c.Message, nil
		}
	}
	return false, "no Ready condition yet", nil
}
