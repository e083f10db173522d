package api_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// newBrowser starts a headless Chromium for the test and returns a context
// of its first tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := testutil.Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a timeout
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

// eval runs js in the page and returns its value.
func eval[T any](ctx context.Context, js string) (T, error) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[T](js))
}

// do runs the steps in the page, failing the test on an error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatal(err)
	}
}

// pageText waits until the text of the element sel is want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, strconv.Quote(sel))
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		got, err := eval[string](ctx, js)
		if err != nil {
			return false, err.Error()
		}
		return got == want, fmt.Sprintf("%s shows %q, want %q", sel, got, want)
	})
}

func countSel(arn string) string { return fmt.Sprintf(`tr[data-stage="%s"] .count`, arn) }

// TestDashboardInChromium: in a real headless Chromium, the page lists two
// stages with their live counts and the total, follows a join without
// reloading, draws the chosen stage's chart from its snapshots and shows its
// stats; a screenshot is saved and is not blank.
func TestDashboardInChromium(t *testing.T) {
	h, db := newReadHarness(t, func(c *api.Config) { c.Live.Tick = 100 * time.Millisecond })
	now := time.Now()
	for i := range 12 { // the last hour, every 5 minutes
		snapshot(t, db, stage, now.Add(-time.Duration(60-5*i)*time.Minute).Truncate(time.Minute), 1+i%4, 2+i%4)
	}
	joined := now.Add(-30 * time.Minute)
	session(t, db, "01JDASHBOARD00000000000001", "a", stage, &joined, nil)
	h.join("a")
	h.join("b")
	a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage2, "user_id": "c"})
	if a.status != 200 {
		t.Fatalf("join %s: %d", stage2, a.status)
	}

	ctx := newBrowser(t)
	do(t, ctx, chromedp.Navigate(h.srv.URL+"/dashboard"))
	waitText(t, ctx, countSel(stage), "2")
	waitText(t, ctx, countSel(stage2), "1")
	waitText(t, ctx, "#total", "3")
	waitText(t, ctx, "#conn", "live")

	// A join shows up without a reload: the marker set in this page survives.
	do(t, ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`window.__sameDocument = true`)(ctx, tg)
		return err
	}))
	h.join("d")
	waitText(t, ctx, countSel(stage), "3")
	waitText(t, ctx, "#total", "4")
	if same, err := eval[bool](ctx, `window.__sameDocument === true`); err != nil || !same {
		t.Fatalf("the page was reloaded (%v)", err)
	}

	// Choose the stage: chart and stats.
	do(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-stage="%s"]`, stage))))
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		drawn, err := eval[int](ctx, `(() => {
			const c = document.querySelector("#chart canvas");
			if (!c || !c.width || !c.height) return -1;
			const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
			return n;
		})()`)
		if err != nil {
			return false, err.Error()
		}
		return drawn > 2000, fmt.Sprintf("%d drawn pixels on the chart canvas", drawn)
	})
	waitText(t, ctx, `#stats td[data-field="total_views"]`, "1")
	if hidden, err := eval[bool](ctx, `document.querySelector("#history-state").hidden`); err != nil || !hidden {
		t.Fatalf("'history unavailable' shown with the history up (%v)", err)
	}

	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	shot, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	assertNotBlank(t, file)
	if keep := os.Getenv("DASHBOARD_SCREENSHOT"); keep != "" { // to look at it
		_ = os.WriteFile(keep, shot, 0o644)
	}
}

// TestDashboardAsksForKey: with API_KEYS set the page asks for a key, says
// when one is refused, and works once the right one is typed in (kept in
// sessionStorage, sent as a bearer header, never in a URL).
func TestDashboardAsksForKey(t *testing.T) {
	h, _ := newReadHarness(t, func(c *api.Config) {
		c.APIKeys = []string{"operator-key"}
		c.Live.Tick = 100 * time.Millisecond
	})
	h.join("a")
	ctx := newBrowser(t)
	do(t, ctx, chromedp.Navigate(h.srv.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS("#key-form")))
	do(t, ctx, chromedp.SendKeys(chromedp.CSS("#key-input"), "wrong"), chromedp.Click(chromedp.CSS("#key-submit")))
	waitText(t, ctx, "#key-error", "the key was refused")
	do(t, ctx, chromedp.SendKeys(chromedp.CSS("#key-input"), "operator-key"), chromedp.Click(chromedp.CSS("#key-submit")))
	waitText(t, ctx, countSel(stage), "1")
	waitText(t, ctx, "#conn", "live")
	h.join("b")
	waitText(t, ctx, countSel(stage), "2")
	if stored, err := eval[string](ctx, `sessionStorage.getItem("viewpulse_api_key")`); err != nil || stored != "operator-key" {
		t.Fatalf("sessionStorage holds %q (%v)", stored, err)
	}
}

// TestDashboardWithoutHistory: with the read API off the page still lists
// the live counts and says 'history unavailable' for a chosen stage.
func TestDashboardWithoutHistory(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.Live.Tick = 100 * time.Millisecond })
	h.join("a")
	ctx := newBrowser(t)
	do(t, ctx, chromedp.Navigate(h.srv.URL+"/dashboard"))
	waitText(t, ctx, countSel(stage), "1")
	do(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-stage="%s"]`, stage))))
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		shown, err := eval[bool](ctx, `!document.querySelector("#history-state").hidden`)
		if err != nil {
			return false, err.Error()
		}
		return shown, "'history unavailable' is not shown"
	})
}

// TestDashboardAssets: the page and its assets are served with their types;
// another name is 404.
func TestDashboardAssets(t *testing.T) {
	h := newHarness(t)
	for path, ctype := range map[string]string{
		"/dashboard": "text/html", "/dashboard/dashboard.js": "text/javascript",
		"/dashboard/uPlot.iife.min.js": "text/javascript", "/dashboard/uPlot.min.css": "text/css",
		"/dashboard/uPlot.LICENSE": "text/plain",
	} {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %s, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
	}
	if a := h.do(http.MethodGet, "/dashboard/../go.mod", "", ""); a.status != 404 {
		t.Errorf("unknown asset = %d", a.status)
	}
	if a := h.do(http.MethodGet, "/dashboard/nope.js", "", ""); a.status != 404 || a.code() != "not_found" {
		t.Errorf("unknown asset = %d %s", a.status, a.code())
	}
}

// assertNotBlank fails unless the PNG at file has many colours: a blank or
// one-colour page has a handful.
func assertNotBlank(t *testing.T, file string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	b := img.Bounds()
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r >> 8, g >> 8, bl >> 8, a >> 8}] = true
		}
	}
	if b.Dx() < 200 || b.Dy() < 200 || len(colours) < 20 {
		t.Fatalf("screenshot %s looks blank: %dx%d, %d colours", file, b.Dx(), b.Dy(), len(colours))
	}
	t.Logf("screenshot %s: %dx%d, %d colours", file, b.Dx(), b.Dy(), len(colours))
}

// TestDashboardRedisUnavailable: with Redis unreachable the page loads and
// says 'Redis unavailable' instead of breaking.
func TestDashboardRedisUnavailable(t *testing.T) {
	srv := serverWithoutRedis(t, 100*time.Millisecond)
	ctx := newBrowser(t)
	do(t, ctx, chromedp.Navigate(srv.URL+"/dashboard"))
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		shown, err := eval[bool](ctx, `!document.querySelector("#redis-state").hidden`)
		if err != nil {
			return false, err.Error()
		}
		return shown, "'Redis unavailable' is not shown"
	})
	waitText(t, ctx, "#conn", "live") // the stream itself stays up
}

// TestDashboardShowsGroups: the page lists the groups with their distinct
// viewers and capacity, following joins live.
func TestDashboardShowsGroups(t *testing.T) {
	h, _ := newReadHarness(t, func(c *api.Config) { c.Live.Tick = 100 * time.Millisecond })
	master, children := groupStages(2)
	makeGroup(t, h, master, children, 2)
	h.post("/v1/viewers/join", map[string]string{"stage_arn": master, "user_id": "twice"})
	ctx := newBrowser(t)
	do(t, ctx, chromedp.Navigate(h.srv.URL+"/dashboard"))
	row := fmt.Sprintf(`tr[data-group="%s"]`, master)
	waitText(t, ctx, row+" .count", "1")
	waitText(t, ctx, row+" .cap", "4")
	h.post("/v1/viewers/join", map[string]string{"stage_arn": children[0], "user_id": "twice"})
	h.post("/v1/viewers/join", map[string]string{"stage_arn": children[0], "user_id": "new"})
	waitText(t, ctx, row+" .count", "2")
}
