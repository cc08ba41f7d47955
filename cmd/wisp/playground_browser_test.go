package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// browserScript drives the playground page in Chromium: it deploys the page's Go example, sends
// it a request, waits for the request's line in the live log, then deploys a source that does not
// compile. It prints what the page showed as JSON; exit status 3 means no browser could start.
const browserScript = `
const { chromium } = require('playwright-core');
(async () => {
  let browser;
  try {
    browser = await chromium.launch({ executablePath: process.env.WISP_CHROMIUM, args: ['--headless', '--no-sandbox'] });
  } catch (e) {
    console.error(String(e));
    process.exit(3);
  }
  const out = { errors: [] };
  const page = await browser.newPage();
  page.on('pageerror', (e) => out.errors.push(String(e)));
  const text = (sel) => page.textContent(sel);
  await page.goto(process.argv[2] + '/_wisp/playground/');
  await page.selectOption('#lang', 'go');
  await page.click('#deploy');
  await page.waitForFunction(() => /deployed|failed/.test(document.getElementById('status').textContent), null, { timeout: 180000 });
  out.status = await text('#status');
  await page.fill('#path', '/hi?name=browser');
  await page.click('#send');
  await page.waitForFunction(() => /Hello, browser/.test(document.getElementById('response').textContent), null, { timeout: 30000 }).catch(() => {});
  out.response = await text('#response');
  await page.waitForFunction(() => /GET \/hi/.test(document.getElementById('log').textContent), null, { timeout: 30000 }).catch(() => {});
  out.log = await text('#log');
  out.url = await text('#url');
  await page.fill('#source', 'package main\n\nfunc main() { nope() }\n');
  await page.click('#deploy');
  await page.waitForFunction(() => /failed/.test(document.getElementById('status').textContent), null, { timeout: 180000 }).catch(() => {});
  out.errorPane = await text('#error');
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
`

// The playground page works in a browser: deploy, request, live log and a build error. It needs
// node, Chromium ($WISP_CHROMIUM, default /usr/bin/chromium) and playwright-core installed under
// $WISP_PLAYWRIGHT (.ci/run installs them); without them it is skipped.
func TestPlaygroundInBrowser(t *testing.T) {
	pw := os.Getenv("WISP_PLAYWRIGHT")
	chromium := os.Getenv("WISP_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	node, err := exec.LookPath("node")
	switch {
	case err != nil:
		t.Skip("no node in PATH")
	case pw == "":
		t.Skip("WISP_PLAYWRIGHT is not set (a directory holding node_modules/playwright-core)")
	}
	if _, err := os.Stat(filepath.Join(pw, "node_modules", "playwright-core")); err != nil {
		t.Skipf("no playwright-core under %s: %v", pw, err)
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s", chromium)
	}
	p := startWisp(t, t.TempDir(), "--playground")
	script := filepath.Join(t.TempDir(), "page.js")
	if err := os.WriteFile(script, []byte(browserScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, p.url)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(pw, "node_modules"), "WISP_CHROMIUM="+chromium)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 3 {
			t.Skipf("Chromium does not start here: %s", stderr.String())
		}
		t.Fatalf("the browser script: %v\n%s", err, stderr.String())
	}
	var out struct {
		Status, Response, Log, URL, ErrorPane string
		Errors                                []string
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("the browser script printed %q: %v", stdout.String(), err)
	}
	t.Logf("page status: %s", out.Status)
	if !strings.Contains(out.Status, "deployed") {
		t.Errorf("status after Deploy: %q", out.Status)
	}
	if !strings.HasPrefix(out.Response, "200 OK") || !strings.Contains(out.Response, "Hello, browser, from the Wisp playground!") {
		t.Errorf("response pane: %q", out.Response)
	}
	if !strings.Contains(out.Log, "stdout INFO  request GET /hi") {
		t.Errorf("log pane: %q", out.Log)
	}
	if !strings.Contains(out.URL, p.url+"/play-") {
		t.Errorf("URL shown: %q", out.URL)
	}
	if !strings.Contains(out.ErrorPane, "main.go:3:15: undefined: nope") {
		t.Errorf("error pane after a bad deploy: %q", out.ErrorPane)
	}
	if len(out.Errors) > 0 {
		t.Errorf("errors in the page: %q", out.Errors)
	}
}
