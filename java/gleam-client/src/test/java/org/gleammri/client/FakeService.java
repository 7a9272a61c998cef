package org.gleammri.client;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * An in-process stand-in for {@code gleam serve} on a loopback port, following {@code
 * docs/service.md}: models, multipart submission, jobs that run for {@code slices} polls, results,
 * bearer tokens, errors as {@code {"detail": ...}}. Fields switch on the failure modes the tests need.
 */
final class FakeService implements AutoCloseable {
    /** One part of a multipart body as the fake received it. */
    record Part(String name, String fileName, String contentType, byte[] content) {
        String text() {
            return new String(content, StandardCharsets.UTF_8);
        }
    }

    /** A request as received. */
    record Request(String method, String path, String authorization, String userAgent) {}

    static final class FakeJob {
        final String id;
        final String fileName;
        final List<String> formats;
        final String model;
        final boolean undersample;
        int polls;

        FakeJob(String id, String fileName, List<String> formats, String model, boolean undersample) {
            this.id = id;
            this.fileName = fileName;
            this.formats = formats;
            this.model = model;
            this.undersample = undersample;
        }
    }

    final HttpServer server;
    private final ExecutorService pool = Executors.newCachedThreadPool();
    final List<Request> requests = Collections.synchronizedList(new ArrayList<>());
    final Map<String, FakeJob> jobs = new ConcurrentHashMap<>();
    private final AtomicInteger ids = new AtomicInteger();

    volatile String token;
    volatile int slices = 3;
    volatile String failWith;
    volatile boolean queueFull;
    volatile long delayMs;
    volatile boolean neverFinish;
    /** Answer this many job polls with 503 (a proxy while the service restarts) before answering. */
    final AtomicInteger unavailablePolls = new AtomicInteger();
    volatile byte[] zipOverride;
    volatile Map<String, Part> lastUpload;
    volatile String lastContentType;

    FakeService() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.setExecutor(pool);
        server.createContext("/", this::handle);
        server.start();
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
    }

    static byte[] result(String fileName, String format) {
        return ("result " + format + " of " + fileName).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] dicomZip(String stem) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
            for (int i = 0; i < 2; i++) {
                zip.putNextEntry(new ZipEntry(String.format("slice_%03d.dcm", i)));
                zip.write(("dicom " + stem + " " + i).getBytes(StandardCharsets.UTF_8));
                zip.closeEntry();
            }
        }
        return bytes.toByteArray();
    }

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            URI uri = ex.getRequestURI();
            String path = uri.getPath();
            String method = ex.getRequestMethod();
            requests.add(new Request(method, path + (uri.getQuery() == null ? "" : "?" + uri.getQuery()),
                    ex.getRequestHeaders().getFirst("Authorization"), ex.getRequestHeaders().getFirst("User-Agent")));
            byte[] body = ex.getRequestBody().readAllBytes();
            if (delayMs > 0) {
                Thread.sleep(delayMs);
            }
            if (path.equals("/healthz")) {
                json(ex, 200, "{\"status\": \"ok\"}");
                return;
            }
            if (token != null && !("Bearer " + token).equals(ex.getRequestHeaders().getFirst("Authorization"))) {
                ex.getResponseHeaders().add("WWW-Authenticate", "Bearer");
                json(ex, 401, "{\"detail\": \"missing or wrong bearer token\"}");
                return;
            }
            if (path.equals("/v1/models") && method.equals("GET")) {
                json(ex, 200, "{\"models\": [{\"name\": \"demo\", \"kind\": \"2d\", \"model\": \"pgd\", "
                        + "\"strategy\": \"greedy\", \"iterations\": 4, \"acceleration\": 4.0, \"device\": \"cpu\"}, "
                        + "{\"name\": \"cine\", \"kind\": \"cine\", \"model\": \"modl\", \"strategy\": \"e2e\", "
                        + "\"iterations\": 8, \"acceleration\": null, \"device\": \"cuda:0\", \"extra\": 1}]}");
                return;
            }
            if (path.equals("/v1/reconstructions") && method.equals("POST")) {
                submit(ex, body);
                return;
            }
            Matcher m = Pattern.compile("/v1/reconstructions/([^/]+)(/result)?").matcher(path);
            if (!m.matches()) {
                json(ex, 404, "{\"detail\": \"Not Found\"}");
                return;
            }
            FakeJob job = jobs.get(m.group(1));
            if (job == null) {
                json(ex, 404, "{\"detail\": \"no job " + m.group(1) + "\"}");
                return;
            }
            if (m.group(2) == null && method.equals("GET")) {
                if (unavailablePolls.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
                    send(ex, 503, "text/html", "<html><body>503 Service Unavailable</body></html>".getBytes());
                    return;
                }
                synchronized (job) {
                    job.polls++;
                    json(ex, 200, jobJson(job));
                }
            } else if (m.group(2) == null && method.equals("DELETE")) {
                jobs.remove(job.id);
                ex.sendResponseHeaders(204, -1);
            } else {
                result(ex, job, uri.getQuery());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void submit(HttpExchange ex, byte[] body) throws IOException {
        lastContentType = ex.getRequestHeaders().getFirst("Content-Type");
        Map<String, Part> parts = parseMultipart(lastContentType, body);
        lastUpload = parts;
        if (queueFull) {
            json(ex, 429, "{\"detail\": \"the queue is full (2 jobs queued or running; --max-queue 2)\"}");
            return;
        }
        Part file = parts.get("file");
        if (file == null || file.content().length == 0) {
            json(ex, 400, "{\"detail\": \"the upload 'file' is empty\"}");
            return;
        }
        String model = parts.containsKey("model") ? parts.get("model").text() : "demo";
        if (!model.equals("demo") && !model.equals("cine")) {
            json(ex, 400, "{\"detail\": \"unknown model '" + model + "'; loaded: demo, cine\"}");
            return;
        }
        List<String> formats = parts.containsKey("formats")
                ? Arrays.asList(parts.get("formats").text().split(","))
                : List.of("h5");
        boolean undersample = !parts.containsKey("undersample") || parts.get("undersample").text().equals("true");
        String id = String.format("%032x", ids.incrementAndGet());
        FakeJob job = new FakeJob(id, file.fileName(), formats, model, undersample);
        jobs.put(id, job);
        ex.getResponseHeaders().add("Location", "/v1/reconstructions/" + id);
        json(ex, 202, jobJson(job));
    }

    private String state(FakeJob job) {
        if (job.polls == 0) {
            return "queued";
        }
        if (neverFinish || job.polls <= slices) {
            return "running";
        }
        return failWith != null ? "failed" : "done";
    }

    private String jobJson(FakeJob job) {
        String state = state(job);
        int done = state.equals("queued") ? 0 : Math.min(job.polls - 1, slices);
        int total = state.equals("queued") ? 0 : slices;
        String error = state.equals("failed") ? quote(failWith) : "null";
        String started = state.equals("queued") ? "null" : "\"2026-12-01T14:00:01.5+00:00\"";
        String finished = state.equals("done") || state.equals("failed") ? "\"2026-12-01T14:00:03.000001+00:00\"" : "null";
        return "{\"id\": \"" + job.id + "\", \"state\": \"" + state + "\", \"model\": \"" + job.model
                + "\", \"file_name\": " + quote(job.fileName) + ", \"formats\": [\""
                + String.join("\", \"", job.formats) + "\"], \"undersample\": " + job.undersample
                + ", \"progress\": {\"done\": " + done + ", \"total\": " + total + "}"
                + ", \"created_at\": \"2026-12-01T14:00:00.123456+00:00\", \"started_at\": " + started
                + ", \"finished_at\": " + finished + ", \"timings\": {\"queued_s\": 0.12, \"running_s\": 1.5}"
                + ", \"error\": " + error + ", \"unknown_field\": [1, 2]}";
    }

    private void result(HttpExchange ex, FakeJob job, String query) throws IOException {
        String format = query != null && query.startsWith("format=") ? query.substring(7) : "h5";
        String state = state(job);
        if (state.equals("failed")) {
            json(ex, 409, "{\"detail\": " + quote("job " + job.id + " failed: " + failWith) + "}");
            return;
        }
        if (!state.equals("done")) {
            json(ex, 409, "{\"detail\": \"job " + job.id + " is " + state + ", not done\"}");
            return;
        }
        if (!job.formats.contains(format)) {
            json(ex, 400, "{\"detail\": \"job " + job.id + " has no format '" + format + "'; it asked for "
                    + String.join(",", job.formats) + "\"}");
            return;
        }
        String stem = job.fileName.substring(0, job.fileName.lastIndexOf('.'));
        String suffix = Format.parse(format).suffix();
        ex.getResponseHeaders().add("Content-Disposition", "attachment; filename=\"" + stem + suffix + "\"");
        byte[] content = format.equals("dcm")
                ? (zipOverride != null ? zipOverride : dicomZip(stem))
                : result(job.fileName, format);
        send(ex, 200, "application/octet-stream", content);
    }

    private static String quote(String s) {
        return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    private static void json(HttpExchange ex, int status, String body) throws IOException {
        send(ex, status, "application/json", body.getBytes(StandardCharsets.UTF_8));
    }

    private static void send(HttpExchange ex, int status, String type, byte[] body) throws IOException {
        ex.getResponseHeaders().add("Content-Type", type);
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    /** A strict multipart/form-data parser: CRLF line ends, the boundary of the Content-Type. */
    static Map<String, Part> parseMultipart(String contentType, byte[] body) {
        Matcher b = Pattern.compile("multipart/form-data; boundary=(\\S+)").matcher(contentType);
        if (!b.matches()) {
            throw new AssertionError("not multipart/form-data: " + contentType);
        }
        byte[] delimiter = ("\r\n--" + b.group(1)).getBytes(StandardCharsets.ISO_8859_1);
        byte[] data = new byte[body.length + 2];
        data[0] = '\r';
        data[1] = '\n';
        System.arraycopy(body, 0, data, 2, body.length);
        Map<String, Part> parts = new LinkedHashMap<>();
        int at = indexOf(data, delimiter, 0);
        if (at != 0) {
            throw new AssertionError("the body does not start with the boundary");
        }
        while (true) {
            int start = at + delimiter.length;
            if (data[start] == '-' && data[start + 1] == '-') {
                if (start + 4 != data.length || data[start + 2] != '\r' || data[start + 3] != '\n') {
                    throw new AssertionError("the closing boundary is not followed by CRLF and the end");
                }
                return parts;
            }
            int headersEnd = indexOf(data, "\r\n\r\n".getBytes(StandardCharsets.ISO_8859_1), start);
            String headers = new String(data, start + 2, headersEnd - start - 2, StandardCharsets.UTF_8);
            int next = indexOf(data, delimiter, headersEnd + 4);
            if (next < 0) {
                throw new AssertionError("no closing boundary");
            }
            byte[] content = Arrays.copyOfRange(data, headersEnd + 4, next);
            Matcher name = Pattern.compile("Content-Disposition: form-data; name=\"([^\"]*)\"(; filename=\"([^\"]*)\")?")
                    .matcher(headers);
            if (!name.find()) {
                throw new AssertionError("no Content-Disposition in " + headers);
            }
            Matcher type = Pattern.compile("Content-Type: (.*)").matcher(headers);
            parts.put(name.group(1), new Part(name.group(1), name.group(3), type.find() ? type.group(1).strip() : null,
                    content));
            at = next;
        }
    }

    private static int indexOf(byte[] data, byte[] needle, int from) {
        outer:
        for (int i = from; i <= data.length - needle.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (data[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }
}
