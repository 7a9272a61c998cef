package org.gleammri.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(20)
class GleamClientTest {
    FakeService fake;
    @TempDir
    Path tmp;

    @BeforeEach
    void start() throws IOException {
        fake = new FakeService();
    }

    @AfterEach
    void stop() {
        fake.close();
    }

    GleamClient.Builder builder() {
        return GleamClient.builder(fake.url()).pollInterval(Duration.ofMillis(5));
    }

    GleamClient client() {
        return builder().build();
    }

    /** A file of every byte value, with CRLFs and a boundary-like line inside. */
    Path scan(String name) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        for (int i = 0; i < 256; i++) {
            bytes.write(i);
        }
        bytes.writeBytes("\r\n--gleam-notaboundary\r\n\r\n--\r\n".getBytes(StandardCharsets.ISO_8859_1));
        Path file = tmp.resolve(name);
        Files.write(file, bytes.toByteArray());
        return file;
    }

    @Test
    void modelsAreParsed() throws Exception {
        List<ModelInfo> models = client().models();
        assertEquals(2, models.size());
        assertEquals(new ModelInfo("demo", "2d", "pgd", "greedy", 4, 4.0, "cpu"), models.get(0));
        assertNull(models.get(1).acceleration());
        assertEquals("cuda:0", models.get(1).device());
        assertEquals("ok", client().health());
    }

    @Test
    void serverUrlIsNormalised() {
        assertEquals("http://h:8000", GleamClient.builder("http://h:8000/v1/").build().serverUrl().toString());
        assertEquals("https://h/gleam", GleamClient.builder("https://h/gleam/").build().serverUrl().toString());
        assertThrows(IllegalArgumentException.class, () -> GleamClient.builder("localhost:8000"));
        assertThrows(IllegalArgumentException.class, () -> GleamClient.builder("ftp://h/"));
    }

    @Test
    void submitSendsTheMultipartBody() throws Exception {
        Path file = scan("knee scan.h5");
        ReconOptions options = ReconOptions.defaults().model("cine").formats(Format.NII, Format.H5).undersample(false);
        Job job = client().submit(file, options);
        assertEquals(JobState.QUEUED, job.state());
        assertEquals(32, job.id().length());
        assertEquals("knee scan.h5", job.fileName());
        assertEquals(List.of("h5", "nii"), job.formats());
        assertEquals(new Job.Progress(0, 0), job.progress());
        assertEquals(OffsetDateTime.of(2026, 12, 1, 14, 0, 0, 123456000, ZoneOffset.UTC), job.createdTime().get());
        assertEquals(Optional.empty(), job.startedTime());

        Map<String, FakeService.Part> parts = fake.lastUpload;
        assertEquals(List.of("file", "model", "formats", "undersample"), new ArrayList<>(parts.keySet()));
        assertArrayEquals(Files.readAllBytes(file), parts.get("file").content());
        assertEquals("knee scan.h5", parts.get("file").fileName());
        assertEquals("application/octet-stream", parts.get("file").contentType());
        assertEquals("cine", parts.get("model").text());
        assertEquals("h5,nii", parts.get("formats").text());
        assertEquals("false", parts.get("undersample").text());
        assertTrue(fake.lastContentType.startsWith("multipart/form-data; boundary=gleam-"));
        FakeService.Request request = fake.requests.get(0);
        assertEquals("POST", request.method());
        assertNull(request.authorization());
        assertTrue(request.userAgent().startsWith("gleam-client-java/"));
    }

    @Test
    void submitDefaultsSendNoModelAndUndersample() throws Exception {
        client().submit(scan("a.h5"), ReconOptions.defaults());
        Map<String, FakeService.Part> parts = fake.lastUpload;
        assertFalse(parts.containsKey("model"));
        assertEquals("h5", parts.get("formats").text());
        assertEquals("true", parts.get("undersample").text());
    }

    @Test
    void cflUploadsCarryTheirHeader() throws Exception {
        Path cfl = scan("raw.cfl");
        Files.writeString(tmp.resolve("raw.hdr"), "# Dimensions\n1 24 32 3\n");
        client().submit(cfl, ReconOptions.defaults());
        assertEquals("raw.hdr", fake.lastUpload.get("header").fileName());
        assertEquals("# Dimensions\n1 24 32 3\n", fake.lastUpload.get("header").text());

        Path other = tmp.resolve("elsewhere.hdr");
        Files.writeString(other, "# other\n");
        client().submit(cfl, ReconOptions.defaults().header(other));
        assertEquals("# other\n", fake.lastUpload.get("header").text());
    }

    @Test
    void submitOfAMissingFileIsALocalError() {
        IOException e = assertThrows(IOException.class,
                () -> client().submit(tmp.resolve("nope.h5"), ReconOptions.defaults()));
        assertFalse(e instanceof GleamException);
        assertTrue(fake.requests.isEmpty());
    }

    @Test
    void awaitReportsProgressChanges() throws Exception {
        fake.slices = 4;
        Job job = client().submit(scan("a.h5"), ReconOptions.defaults());
        List<String> seen = new ArrayList<>();
        Job done = client().await(job.id(), j -> seen.add(j.state() + " " + j.progress().done() + "/" + j.progress().total()));
        assertEquals(JobState.DONE, done.state());
        assertEquals(List.of("running 0/4", "running 1/4", "running 2/4", "running 3/4", "done 4/4"), seen);
        assertEquals(1.5, done.timing("running_s").get());
        assertTrue(done.finishedTime().isPresent());
    }

    @Test
    void downloadWritesTheFile() throws Exception {
        GleamClient client = client();
        Job job = client.submit(scan("a.h5"), ReconOptions.defaults().formats(Format.H5, Format.PNG));
        client.await(job.id());
        Path file = client.download(job.id(), Format.PNG, tmp.resolve("x.png"));
        assertArrayEquals(FakeService.result("a.h5", "png"), Files.readAllBytes(file));
        Path dir = Files.createDirectory(tmp.resolve("dir"));
        Path named = client.download(job.id(), Format.H5, dir);
        assertEquals(dir.resolve("a.h5"), named);
        assertArrayEquals(FakeService.result("a.h5", "h5"), Files.readAllBytes(named));
        try (var listing = Files.list(dir)) {
            assertEquals(1, listing.count(), "no partial files left");
        }
        GleamApiException.BadRequestException e = assertThrows(GleamApiException.BadRequestException.class,
                () -> client.download(job.id(), Format.DCM, tmp.resolve("d.zip")));
        assertTrue(e.detail().contains("has no format 'dcm'"), e.detail());
        assertFalse(Files.exists(tmp.resolve("d.zip")));
    }

    @Test
    void downloadBeforeDoneIsAConflict() throws Exception {
        Job job = client().submit(scan("a.h5"), ReconOptions.defaults());
        GleamApiException.ConflictException e = assertThrows(GleamApiException.ConflictException.class,
                () -> client().download(job.id(), Format.H5, tmp.resolve("a.h5")));
        assertEquals(409, e.status());
        assertEquals("job " + job.id() + " is queued, not done", e.detail());
    }

    @Test
    void reconstructEndToEnd() throws Exception {
        Path file = scan("brain_001.h5");
        Path out = tmp.resolve("out");
        List<Job> progress = new ArrayList<>();
        List<Path> written = client().reconstruct(file,
                ReconOptions.defaults().formats(Format.DCM, Format.NII, Format.H5, Format.PNG), out, progress::add);
        assertEquals(List.of(out.resolve("brain_001.h5"), out.resolve("brain_001.nii.gz"),
                out.resolve("brain_001.png"), out.resolve("brain_001_dicom")), written);
        assertArrayEquals(FakeService.result("brain_001.h5", "h5"), Files.readAllBytes(written.get(0)));
        assertArrayEquals(FakeService.result("brain_001.h5", "nii"), Files.readAllBytes(written.get(1)));
        assertEquals("dicom brain_001 1", Files.readString(out.resolve("brain_001_dicom/slice_001.dcm")));
        try (var listing = Files.list(out)) {
            assertEquals(4, listing.count(), "no temporary files left");
        }
        assertEquals(JobState.QUEUED, progress.get(0).state());
        assertEquals(JobState.DONE, progress.get(progress.size() - 1).state());
    }

    @Test
    void unsafeZipEntriesAreRefused() throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
            zip.putNextEntry(new ZipEntry("../evil.dcm"));
            zip.write(1);
            zip.closeEntry();
        }
        fake.zipOverride = bytes.toByteArray();
        Path out = tmp.resolve("out");
        GleamException e = assertThrows(GleamException.class,
                () -> client().reconstruct(scan("a.h5"), ReconOptions.defaults().formats(Format.DCM), out));
        assertTrue(e.getMessage().contains("outside its folder"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("evil.dcm")));
    }

    @Test
    void bearerTokenIsSent() throws Exception {
        fake.token = "s3cret";
        Path tokenFile = tmp.resolve("token");
        Files.writeString(tokenFile, "  s3cret\n");
        GleamClient client = builder().tokenFile(tokenFile).build();
        assertEquals(2, client.models().size());
        List<Path> written = client.reconstruct(scan("a.h5"), ReconOptions.defaults(), tmp.resolve("out"));
        assertEquals(1, written.size());
        assertTrue(fake.requests.stream().allMatch(r -> "Bearer s3cret".equals(r.authorization())));
    }

    @Test
    void missingOrWrongTokenIsUnauthorized() {
        fake.token = "s3cret";
        GleamApiException.UnauthorizedException e =
                assertThrows(GleamApiException.UnauthorizedException.class, () -> client().models());
        assertEquals(401, e.status());
        assertEquals("missing or wrong bearer token", e.detail());
        assertEquals("GET /v1/models: HTTP 401: missing or wrong bearer token", e.getMessage());
        assertThrows(GleamApiException.UnauthorizedException.class, () -> builder().token("wrong").build().models());
    }

    @Test
    void badRequestCarriesTheServiceDetail() throws Exception {
        GleamApiException.BadRequestException e = assertThrows(GleamApiException.BadRequestException.class,
                () -> client().submit(scan("a.h5"), ReconOptions.defaults().model("nope")));
        assertEquals(400, e.status());
        assertEquals("unknown model 'nope'; loaded: demo, cine", e.detail());
        assertEquals("POST /v1/reconstructions", e.request());
        Path empty = Files.createFile(tmp.resolve("empty.h5"));
        GleamApiException e2 = assertThrows(GleamApiException.class,
                () -> client().submit(empty, ReconOptions.defaults()));
        assertEquals("the upload 'file' is empty", e2.detail());
    }

    @Test
    void queueFullIsItsOwnError() {
        fake.queueFull = true;
        GleamApiException.QueueFullException e = assertThrows(GleamApiException.QueueFullException.class,
                () -> client().reconstruct(scan("a.h5"), ReconOptions.defaults(), tmp.resolve("out")));
        assertEquals(429, e.status());
        assertTrue(e.detail().startsWith("the queue is full"));
        assertFalse(Files.exists(tmp.resolve("out")));
    }

    @Test
    void unknownJobIsNotFound() {
        GleamApiException.NotFoundException e =
                assertThrows(GleamApiException.NotFoundException.class, () -> client().job("abc"));
        assertEquals("no job abc", e.detail());
    }

    @Test
    void failedJobRaisesItsError() throws Exception {
        fake.failWith = "scan.h5: not an HDF5 file";
        Job job = client().submit(scan("a.h5"), ReconOptions.defaults());
        JobFailedException e = assertThrows(JobFailedException.class, () -> client().await(job.id()));
        assertEquals("scan.h5: not an HDF5 file", e.error());
        assertEquals(JobState.FAILED, e.job().state());
        assertTrue(e.getMessage().contains("failed: scan.h5: not an HDF5 file"), e.getMessage());
        assertThrows(JobFailedException.class,
                () -> client().reconstruct(scan("b.h5"), ReconOptions.defaults(), tmp.resolve("out")));
    }

    @Test
    void requestTimeout() {
        fake.delayMs = 2000;
        GleamClient client = builder().requestTimeout(Duration.ofMillis(200)).build();
        GleamTimeoutException e = assertThrows(GleamTimeoutException.class, client::models);
        assertTrue(e.getMessage().contains("no answer"), e.getMessage());
    }

    @Test
    void awaitTimeout() throws Exception {
        fake.neverFinish = true;
        GleamClient client = builder().awaitTimeout(Duration.ofMillis(200)).build();
        Job job = client.submit(scan("a.h5"), ReconOptions.defaults());
        GleamTimeoutException e = assertThrows(GleamTimeoutException.class, () -> client.await(job.id()));
        assertTrue(e.getMessage().contains("not finished after"), e.getMessage());
        assertTrue(e.getMessage().contains("(running, "), e.getMessage());
    }

    @Test
    void awaitRidesOutABriefOutage() throws Exception {
        GleamClient client = client();
        Job job = client.submit(scan("a.h5"), ReconOptions.defaults());
        fake.unavailablePolls.set(3);
        assertEquals(JobState.DONE, client.await(job.id()).state());

        Job second = client.submit(scan("b.h5"), ReconOptions.defaults());
        fake.unavailablePolls.set(1_000_000);
        GleamClient impatient = builder().retryWindow(Duration.ofMillis(100)).build();
        GleamApiException.ServerErrorException e =
                assertThrows(GleamApiException.ServerErrorException.class, () -> impatient.await(second.id()));
        assertEquals(503, e.status());
        assertEquals("<html><body>503 Service Unavailable</body></html>", e.detail());
    }

    @Test
    void unreachableService() throws Exception {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        GleamClient client = GleamClient.builder("http://127.0.0.1:" + port).build();
        GleamConnectionException e = assertThrows(GleamConnectionException.class, client::models);
        assertTrue(e.getMessage().startsWith("cannot reach the service at http://127.0.0.1:" + port), e.getMessage());
    }

    @Test
    void deleteRemovesTheJob() throws Exception {
        GleamClient client = client();
        Job job = client.submit(scan("a.h5"), ReconOptions.defaults());
        client.delete(job.id());
        assertThrows(GleamApiException.NotFoundException.class, () -> client.job(job.id()));
    }

    @Test
    void errorDetailsOfOtherBodies() {
        assertEquals("[{\"msg\":\"field required\"}]",
                Transport.detail(422, "{\"detail\": [{\"msg\": \"field required\"}]}".getBytes()));
        assertEquals("HTTP 502 without a message", Transport.detail(502, new byte[0]));
        assertEquals("Bad Gateway", Transport.detail(502, "  Bad\n  Gateway ".getBytes()));
    }

    @Test
    void contentDispositionNames() {
        assertEquals(Optional.of("a.nii.gz"), ResultFiles.fileName("attachment; filename=\"a.nii.gz\""));
        assertEquals(Optional.of("ü.h5"), ResultFiles.fileName("attachment; filename*=utf-8''%C3%BC.h5; filename=\"u.h5\""));
        assertEquals(Optional.of("passwd"), ResultFiles.fileName("attachment; filename=\"../../etc/passwd\""));
        assertEquals(Optional.empty(), ResultFiles.fileName("attachment; filename=\"..\""));
        assertEquals(Optional.empty(), ResultFiles.fileName("attachment"));
    }

    @Test
    void optionsAndFormats() {
        assertEquals(Format.NII, Format.parse(" NII "));
        assertThrows(IllegalArgumentException.class, () -> Format.parse("jpg"));
        assertThrows(IllegalArgumentException.class, () -> ReconOptions.defaults().formats(java.util.Set.of()));
        assertEquals("scan", GleamClient.stem(Path.of("dir/scan.h5")));
        assertEquals("a.b", GleamClient.stem(Path.of("a.b.dat")));
        assertEquals(".hidden", GleamClient.stem(Path.of(".hidden")));
    }
}
