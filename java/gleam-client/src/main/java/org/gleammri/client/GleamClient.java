package org.gleammri.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.stream.Collectors;

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
    private final Transport transport;
    private final Duration awaitTimeout;
    private final Duration pollInterval;
    private final Duration retryWindow;

    private GleamClient(Builder b) {
        this.transport = new Transport(b.base, b.token, b.connectTimeout, b.requestTimeout);
        this.awaitTimeout = b.awaitTimeout;
        this.pollInterval = b.pollInterval;
        this.retryWindow = b.retryWindow;
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
        return transport.base();
    }

    /** {@code GET /healthz}: {@code "ok"} when the service is up. */
    public String health() throws IOException, InterruptedException {
        JsonNode node = transport.getJson("/healthz", JsonNode.class);
        return node.path("status").asText("");
    }

    /** {@code GET /v1/models}: the models the service has loaded. */
    public List<ModelInfo> models() throws IOException, InterruptedException {
        ModelList list = transport.getJson("/v1/models", ModelList.class);
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
        String what = "POST /v1/reconstructions";
        HttpRequest.Builder request = transport.request("/v1/reconstructions")
                .header("Content-Type", body.contentType())
                .POST(body.build());
        return Transport.parse(transport.send(request, what), Job.class, what);
    }

    /** {@code GET /v1/reconstructions/{id}}: the job now. */
    public Job job(String jobId) throws IOException, InterruptedException {
        return transport.getJson(jobPath(jobId), Job.class);
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
                            + Transport.seconds(awaitTimeout) + where, null);
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
        HttpResponse<InputStream> response =
                transport.send(transport.request(path).GET(), HttpResponse.BodyHandlers.ofInputStream(), what);
        try (InputStream in = response.body()) {
            if (response.statusCode() != 200) {
                throw Transport.error(response.statusCode(), in.readAllBytes(), what, response);
            }
            Path file = target;
            if (Files.isDirectory(target)) {
                String name = ResultFiles.fileName(response.headers().firstValue("Content-Disposition").orElse(""))
                        .orElse(jobId + format.suffix());
                file = target.resolve(name);
            }
            ResultFiles.write(in, file, what);
            return file;
        }
    }

    /** {@code DELETE /v1/reconstructions/{id}}: the job and its files are gone (a running job is cancelled). */
    public void delete(String jobId) throws IOException, InterruptedException {
        String path = jobPath(jobId);
        transport.send(transport.request(path).DELETE(), "DELETE " + path);
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
                    written.add(ResultFiles.unzip(zip, outDir.resolve(stem + "_dicom")));
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
