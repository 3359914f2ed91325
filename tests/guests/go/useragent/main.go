// HTTP trigger (?trigger=http), the product description's example with encoding/json: reads the
// request JSON from stdin and answers 200 with Content-Type: text/plain, X-Powered-By:
// CleverCloud and the body "User-Agent: <the request's User-Agent>" (empty when it has none).
// A request it cannot read gets a 400 response saying why, as the Rust and C helpers do.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// request holds the members of the request JSON this guest uses; the others are ignored.
type request struct {
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
}

// response is the response JSON; field order gives the member order, as the other guests write.
type response struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"bodyEncoding"`
}

func main() {
	resp := handle(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	// Keep <, > and & as they are (JSON allows them; the other guests write them so).
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		fmt.Fprintf(os.Stderr, "useragent: writing the response: %v\n", err)
		os.Exit(1)
	}
}

func handle(in io.Reader) response {
	input, err := io.ReadAll(in)
	var req request
	if err == nil {
		err = json.Unmarshal(input, &req)
	}
	if err == nil && req.Method == "" {
		err = fmt.Errorf(`no "method" member`)
	}
	if err != nil {
		text := fmt.Sprintf("useragent: the function could not read its HTTP trigger request: %v.\n"+
			"It expects to be called with ?trigger=http.\n", err)
		fmt.Fprint(os.Stderr, text)
		return response{
			Status:       400,
			Headers:      map[string]string{"Content-Type": "text/plain; charset=utf-8"},
			Body:         text,
			BodyEncoding: "utf8",
		}
	}
	// The worker sends lowercase names; any case is found, as the other guests do.
	ua := ""
	for name, value := range req.Headers {
		if strings.EqualFold(name, "user-agent") {
			ua = value
		}
	}
	return response{
		Status: 200,
		// encoding/json writes map keys sorted: Content-Type, then X-Powered-By.
		Headers:      map[string]string{"Content-Type": "text/plain", "X-Powered-By": "CleverCloud"},
		Body:         "User-Agent: " + ua,
		BodyEncoding: "utf8",
	}
}
