package org.gleammri.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLDecoder;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;

/**
 * A client of the reconstruction service {@code gleam serve} (API: {@code docs/service.md}).
 *
 * <pre>{@code
 * GleamClient client = GleamClient.builder("http://localhost:8000")
 *         .tokenFile(Path.of("token.txt"))
 *         .build();
 * List<Path> written = client.reconstruct(Path.of("scan.h5"),
 *         ReconOptions.defaults().formats(Format.H5, Format.NII), Path.of("out"));
 * }</pre>
 *
 * <p>Every method throws a {@link GleamException} subclass for what went wrong on the service's side
 * ({@link GleamApiException} with the service's {@code detail}, {@link JobFailedException}, {@link
 * GleamConnectionException}, {@link GleamTimeoutException}) and a plain {@link IOException} for
 * local files. Instances are thread-safe.
 */
public final class GleamClient {
    static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
            .configure(DeserializationFeature.READ_UNKNOWN_ENUM_VALUES_USING_DEFAULT_VALUE, true);
    private static final String USER_AGENT = "gleam-client-java/0.1";

    private final URI base;
    private final String token;
    private final Duration requestTimeout;
    private final Duration awaitTimeout;
    private final Duration pollInterval;
    private final Duration retryWindow;
    private final HttpClient http;

    private GleamClient(Builder b) {
        this.base = b.base;
        this.token = b.token;
        this.requestTimeout = b.requestTimeout;
        this.awaitTimeout = b.awaitTimeout;
        this.pollInterval = b.pollInterval;
        this.retryWindow = b.retryWindow;
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(b.connectTimeout)
                .followRedirects(HttpClient.Redirect.NEVER)
                .build();
    }

    /**
     * A builder for the service at {@code serverUrl}, e.g. {@code http://localhost:8000} (a trailing
     * {@code /} or {@code /v1} is dropped; a path prefix of a reverse proxy is kept).
     */
    public static Builder builder(String serverUrl) {
        return new Builder(serverUrl);
    }

    /** The service's root URL, without {@code /v1}. */
    public URI serverUrl() {
        return base;
    }

    /** {@code GET /healthz}: {@code "ok"} when the service is up. */
    public String health() throws IOException, InterruptedException {
        JsonNode node = getJson("/healthz", JsonNode.class);
        return node.path("status").asText("");
    }

    /** {@code GET /v1/models}: the models the service has loaded. */
    public List<ModelInfo> models() throws IOException, InterruptedException {
        ModelList list = getJson("/v1/models", ModelList.class);
        return list.models == null ? List.of() : List.copyOf(list.models);
    }

    /**
     * {@code POST /v1/reconstructions}: uploads {@code file} and queues its reconstruction. For a
     * BART {@code .cfl}, the {@code .hdr} of {@link ReconOptions#header} (or the one beside the
     * {@code .cfl}) goes with it.
     *
     * @return the job as accepted ({@code queued})
     */
    public Job submit(Path file, ReconOptions options) throws IOException, InterruptedException {
        Objects.requireNonNull(options, "options");
        Multipart body = new Multipart().file("file", file);
        Optional<Path> header = options.header().or(() -> siblingHeader(file));
        if (header.isPresent()) {
            body.file("header", header.get());
        }
        if (options.model().isPresent()) {
            body.field("model", options.model().get());
        }
        body.field("formats", options.formats().stream().map(Format::wireName).collect(Collectors.joining(",")));
        body.field("undersample", Boolean.toString(options.undersample()));
        HttpRequest.Builder request = request("/v1/reconstructions")
                .header("Content-Type", body.contentType())
                .POST(body.build());
        return parse(send(request, "POST /v1/reconstructions"), Job.class, "POST /v1/reconstructions");
    }

    /** {@code GET /v1/reconstructions/{id}}: the job now. */
    public Job job(String jobId) throws IOException, InterruptedException {
        return getJson(jobPath(jobId), Job.class);
    }

    /** {@link #await(String, ProgressListener)} without a listener. */
    public Job await(String jobId) throws IOException, InterruptedException {
        return await(jobId, ProgressListener.NONE);
    }

    /**
     * Polls the job until it is {@code done}, telling {@code listener} at the first poll and at each
     * change of state or progress. Connection errors and 5xx answers while polling are retried for
     * the builder's {@code retryWindow} (the service may be restarting: it keeps accepted jobs).
     *
     * @return the finished job
     * @throws JobFailedException the job failed (with the service's error)
     * @throws GleamTimeoutException not finished within the builder's {@code awaitTimeout}
     */
    public Job await(String jobId, ProgressListener listener) throws IOException, InterruptedException {
        long start = System.nanoTime();
        Long failingSince = null;
        Job last = null;
        while (true) {
            Job job;
            try {
                job = job(jobId);
                failingSince = null;
            } catch (GleamConnectionException | GleamApiException.ServerErrorException e) {
                long now = System.nanoTime();
                failingSince = failingSince == null ? now : failingSince;
                if (now - failingSince > retryWindow.toNanos()) {
                    throw e;
                }
                job = null;
            }
            if (job != null) {
                if (last == null || job.state() != last.state()
                        || !job.progressOrZero().equals(last.progressOrZero())) {
                    listener.onProgress(job);
                }
                last = job;
                if (job.state() == JobState.DONE) {
                    return job;
                }
                if (job.state() == JobState.FAILED) {
                    throw new JobFailedException(job);
                }
            }
            long waited = System.nanoTime() - start;
            long sleep = pollInterval.toNanos();
            if (awaitTimeout != null) {
                long left = awaitTimeout.toNanos() - waited;
                if (left <= 0) {
                    String where = last == null ? "" : " (" + last.state() + ", "
                            + last.progressOrZero().done() + "/" + last.progressOrZero().total() + ")";
                    throw new GleamTimeoutException("job " + jobId + " not finished after "
                            + seconds(awaitTimeout) + where, null);
                }
                sleep = Math.min(sleep, left);
            }
            Thread.sleep(Math.max(1, sleep / 1_000_000));
        }
    }

    /**
     * {@code GET /v1/reconstructions/{id}/result?format=F}: writes the result to {@code target}, or,
     * when {@code target} is a folder, to the file the service names in it ({@code <stem>.h5}, {@code
     * <stem>.nii.gz}, {@code <stem>.png}, {@code <stem>_dicom.zip}). The file appears whole or not at
     * all.
     *
     * @return the file written
     * @throws GleamApiException.ConflictException the job is not done
     */
    public Path download(String jobId, Format format, Path target) throws IOException, InterruptedException {
        String path = jobPath(jobId) + "/result?format=" + format.wireName();
        String what = "GET " + path;
        HttpResponse<InputStream> response = send(request(path).GET(), HttpResponse.BodyHandlers.ofInputStream(), what);
        try (InputStream in = response.body()) {
            if (response.statusCode() != 200) {
                throw error(response.statusCode(), in.readAllBytes(), what, response);
            }
            Path file = target;
            if (Files.isDirectory(target)) {
                String name = fileName(response.headers().firstValue("Content-Disposition").orElse(""))
                        .orElse(jobId + format.suffix());
                file = target.resolve(name);
            }
            Path parent = file.toAbsolutePath().getParent();
            Files.createDirectories(parent);
            Path tmp = Files.createTempFile(parent, "." + file.getFileName(), ".part");
            try {
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                moveInto(tmp, file);
            } catch (IOException e) {
                Files.deleteIfExists(tmp);
                if (e instanceof FileSystemException) {
                    throw e;
                }
                throw new GleamConnectionException(what + ": download interrupted: " + e.getMessage(), e);
            }
            return file;
        }
    }

    /** {@code DELETE /v1/reconstructions/{id}}: the job and its files are gone (a running job is cancelled). */
    public void delete(String jobId) throws IOException, InterruptedException {
        String path = jobPath(jobId);
        send(request(path).DELETE(), "DELETE " + path);
    }

    /** {@link #reconstruct(Path, ReconOptions, Path, ProgressListener)} without a listener. */
    public List<Path> reconstruct(Path file, ReconOptions options, Path outDir)
            throws IOException, InterruptedException {
        return reconstruct(file, options, outDir, ProgressListener.NONE);
    }

    /**
     * Submits {@code file}, awaits the job and downloads every format asked for, as {@code gleam
     * recon} writes them: {@code OUT/<stem>.h5} (dataset {@code reconstruction}), {@code
     * <stem>.nii.gz}, {@code <stem>.png}, and the DICOM series unzipped into {@code OUT/<stem>_dicom/}
     * ({@code <stem>} is {@code file}'s name without its last suffix).
     *
     * @return the files written (the DICOM folder for {@code dcm}), in the order h5, nii, png, dcm
     */
    public List<Path> reconstruct(Path file, ReconOptions options, Path outDir, ProgressListener listener)
            throws IOException, InterruptedException {
        Job job = submit(file, options);
        listener.onProgress(job);
        job = await(job.id(), listener);
        String stem = stem(file);
        Files.createDirectories(outDir);
        List<Path> written = new ArrayList<>();
        for (Format format : options.formats()) {
            if (format == Format.DCM) {
                Path zip = Files.createTempFile(outDir, "." + stem + "_dicom", ".zip.part");
                try {
                    download(job.id(), format, zip);
                    written.add(unzip(zip, outDir.resolve(stem + "_dicom")));
                } finally {
                    Files.deleteIfExists(zip);
                }
            } else {
                written.add(download(job.id(), format, outDir.resolve(stem + format.suffix())));
            }
        }
        return written;
    }

    /** {@code name} without its last suffix, as Python's {@code Path.stem}: {@code scan.h5} → {@code scan}. */
    public static String stem(Path file) {
        String name = file.getFileName().toString();
        int dot = name.lastIndexOf('.');
        return dot > 0 ? name.substring(0, dot) : name;
    }

    // ---------------------------------------------------------------- internals

    private static final class ModelList {
        public List<ModelInfo> models;
    }

    private static Optional<Path> siblingHeader(Path file) {
        String name = file.getFileName().toString();
        if (!name.toLowerCase(Locale.ROOT).endsWith(".cfl")) {
            return Optional.empty();
        }
        Path hdr = file.resolveSibling(name.substring(0, name.length() - 4) + ".hdr");
        return Files.isRegularFile(hdr) ? Optional.of(hdr) : Optional.empty();
    }

    private static String jobPath(String jobId) {
        if (jobId == null || jobId.isBlank()) {
            throw new IllegalArgumentException("a job id is needed");
        }
        return "/v1/reconstructions/" + URLEncoder.encode(jobId, StandardCharsets.UTF_8).replace("+", "%20");
    }

    private HttpRequest.Builder request(String path) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(requestTimeout)
                .header("User-Agent", USER_AGENT)
                .header("Accept", "application/json");
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        return b;
    }

    private <T> T getJson(String path, Class<T> type) throws IOException, InterruptedException {
        return parse(send(request(path).GET(), "GET " + path), type, "GET " + path);
    }

    private HttpResponse<byte[]> send(HttpRequest.Builder request, String what)
            throws IOException, InterruptedException {
        HttpResponse<byte[]> response = send(request, HttpResponse.BodyHandlers.ofByteArray(), what);
        if (response.statusCode() / 100 != 2) {
            throw error(response.statusCode(), response.body(), what, response);
        }
        return response;
    }

    private <T> HttpResponse<T> send(HttpRequest.Builder request, HttpResponse.BodyHandler<T> handler, String what)
            throws IOException, InterruptedException {
        try {
            return http.send(request.build(), handler);
        } catch (HttpConnectTimeoutException e) {
            throw new GleamTimeoutException(what + ": could not connect to " + base + " within the connect timeout", e);
        } catch (HttpTimeoutException e) {
            throw new GleamTimeoutException(what + ": no answer from " + base + " within " + seconds(requestTimeout), e);
        } catch (ConnectException e) {
            String why = e.getMessage() == null || e.getMessage().isBlank() ? "connection refused" : e.getMessage();
            throw new GleamConnectionException("cannot reach the service at " + base + " (" + why + ")", e);
        } catch (FileSystemException e) {
            throw e; // a local file (the upload) could not be read
        } catch (IOException e) {
            throw new GleamConnectionException(what + ": connection to " + base + " failed: " + e.getMessage(), e);
        }
    }

    private static <T> T parse(HttpResponse<byte[]> response, Class<T> type, String what) throws GleamException {
        try {
            return JSON.readValue(response.body(), type);
        } catch (IOException e) {
            throw new GleamException(what + ": the answer is not what the API describes: " + e.getMessage(), e);
        }
    }

    private static GleamApiException error(int status, byte[] body, String what, HttpResponse<?> response) {
        return GleamApiException.of(status, detail(status, body), what, response.headers().firstValue("Retry-After"));
    }

    /** The {@code detail} of an error body; the body itself (shortened) when it is not the service's JSON. */
    static String detail(int status, byte[] body) {
        try {
            JsonNode detail = JSON.readTree(body).get("detail");
            if (detail != null && !detail.isNull()) {
                return detail.isTextual() ? detail.asText() : detail.toString();
            }
        } catch (JsonProcessingException | RuntimeException e) {
            // not JSON: a proxy's page, say
        } catch (IOException e) {
            // not reachable for a byte array
        }
        String text = new String(body, StandardCharsets.UTF_8).strip().replaceAll("\\s+", " ");
        if (text.isEmpty()) {
            return "HTTP " + status + " without a message";
        }
        return text.length() > 300 ? text.substring(0, 300) + "..." : text;
    }

    private static final Pattern FILENAME_STAR = Pattern.compile("filename\\*\\s*=\\s*(?:UTF-8|utf-8)''([^;]+)");
    private static final Pattern FILENAME = Pattern.compile("filename\\s*=\\s*(?:\"([^\"]*)\"|([^;\\s]+))");

    /** The file name of a {@code Content-Disposition}, reduced to a plain name (no folders). */
    static Optional<String> fileName(String disposition) {
        String name = null;
        Matcher star = FILENAME_STAR.matcher(disposition);
        if (star.find()) {
            name = URLDecoder.decode(star.group(1).trim(), StandardCharsets.UTF_8);
        } else {
            Matcher plain = FILENAME.matcher(disposition);
            if (plain.find()) {
                name = plain.group(1) != null ? plain.group(1) : plain.group(2);
            }
        }
        if (name == null) {
            return Optional.empty();
        }
        name = name.substring(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1).strip();
        if (name.isEmpty() || name.equals(".") || name.equals("..")) {
            return Optional.empty();
        }
        return Optional.of(name);
    }

    private static void moveInto(Path tmp, Path file) throws IOException {
        try {
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Extracts {@code zip} into {@code dir} (created; same-named files replaced); entries leaving it are refused. */
    static Path unzip(Path zip, Path dir) throws IOException {
        Path root = dir.toAbsolutePath().normalize();
        Files.createDirectories(root);
        try (ZipInputStream in = new ZipInputStream(Files.newInputStream(zip))) {
            for (ZipEntry entry; (entry = in.getNextEntry()) != null; ) {
                Path target = root.resolve(entry.getName()).normalize();
                if (!target.startsWith(root) || target.equals(root)) {
                    throw new GleamException("the DICOM zip holds an entry outside its folder: " + entry.getName());
                }
                if (entry.isDirectory()) {
                    Files.createDirectories(target);
                } else {
                    Files.createDirectories(target.getParent());
                    Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        return dir;
    }

    private static String seconds(Duration d) {
        return String.format(Locale.ROOT, "%.3g s", d.toMillis() / 1000.0);
    }

    /** Settings of a {@link GleamClient}. */
    public static final class Builder {
        private final URI base;
        private String token;
        private Duration connectTimeout = Duration.ofSeconds(10);
        private Duration requestTimeout = Duration.ofMinutes(2);
        private Duration awaitTimeout;
        private Duration pollInterval = Duration.ofMillis(500);
        private Duration retryWindow = Duration.ofSeconds(30);

        private Builder(String serverUrl) {
            String url = Objects.requireNonNull(serverUrl, "serverUrl").strip();
            while (url.endsWith("/")) {
                url = url.substring(0, url.length() - 1);
            }
            if (url.endsWith("/v1")) {
                url = url.substring(0, url.length() - 3);
            }
            URI uri;
            try {
                uri = URI.create(url);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("not a URL: " + serverUrl, e);
            }
            if (uri.getScheme() == null || !(uri.getScheme().equals("http") || uri.getScheme().equals("https"))
                    || uri.getHost() == null) {
                throw new IllegalArgumentException("not an http(s) URL: " + serverUrl + " (e.g. http://localhost:8000)");
            }
            this.base = uri;
        }

        /** The bearer token of a service run with {@code --token-file} (whitespace stripped); {@code null}: none. */
        public Builder token(String value) {
            String stripped = value == null ? null : value.strip();
            this.token = stripped == null || stripped.isEmpty() ? null : stripped;
            return this;
        }

        /** The token read from a file (its content, whitespace stripped, as the service reads its own). */
        public Builder tokenFile(Path file) throws IOException {
            String value = Files.readString(file, StandardCharsets.UTF_8).strip();
            if (value.isEmpty()) {
                throw new IOException("the token file " + file + " is empty");
            }
            return token(value);
        }

        /** How long connecting may take (default 10 s). */
        public Builder connectTimeout(Duration value) {
            this.connectTimeout = positive(value, "connectTimeout");
            return this;
        }

        /** How long each request may wait for its answer, uploads included (default 2 min). */
        public Builder requestTimeout(Duration value) {
            this.requestTimeout = positive(value, "requestTimeout");
            return this;
        }

        /** How long {@link GleamClient#await} waits for a job; {@code null} (default): as long as it takes. */
        public Builder awaitTimeout(Duration value) {
            this.awaitTimeout = value == null ? null : positive(value, "awaitTimeout");
            return this;
        }

        /** The time between polls in {@link GleamClient#await} (default 0.5 s). */
        public Builder pollInterval(Duration value) {
            this.pollInterval = positive(value, "pollInterval");
            return this;
        }

        /** How long {@link GleamClient#await} retries an unreachable or failing (5xx) service (default 30 s). */
        public Builder retryWindow(Duration value) {
            this.retryWindow = Objects.requireNonNull(value, "retryWindow");
            return this;
        }

        public GleamClient build() {
            return new GleamClient(this);
        }

        private static Duration positive(Duration value, String name) {
            if (value == null || value.isNegative() || value.isZero()) {
                throw new IllegalArgumentException(name + " must be a positive duration");
            }
            return value;
        }
    }
}
