package org.gleammri.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.gleammri.client.cli.Main;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(20)
class CliTest {
    FakeService fake;
    @TempDir
    Path tmp;
    String out;
    String err;

    @BeforeEach
    void start() throws IOException {
        fake = new FakeService();
    }

    @AfterEach
    void stop() {
        fake.close();
    }

    int run(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8),
                new PrintStream(e, true, StandardCharsets.UTF_8));
        out = o.toString(StandardCharsets.UTF_8);
        err = e.toString(StandardCharsets.UTF_8);
        return code;
    }

    Path scan() throws IOException {
        return Files.writeString(tmp.resolve("scan.h5"), "k-space");
    }

    @Test
    void help() {
        assertEquals(0, run("--help"));
        assertTrue(out.contains("reconstruct FILE --server URL -o OUT"));
        assertTrue(out.contains("--no-undersample"));
    }

    @Test
    void usageErrors() throws IOException {
        assertEquals(Main.USAGE, run());
        assertTrue(err.contains("a command is needed"), err);
        assertEquals(Main.USAGE, run("reconstruct", "x.h5", "--server", fake.url()));
        assertTrue(err.contains("needs -o OUT"), err);
        assertEquals(Main.USAGE, run("reconstruct", "x.h5", "-o", "out", "--server", fake.url(), "--formats", "h5,jpg"));
        assertTrue(err.contains("unknown output format 'jpg'"), err);
        assertEquals(Main.USAGE, run("reconstruct", "x.h5", "-o", "out", "--server", fake.url(), "--bogus"));
        assertTrue(err.contains("unknown option --bogus"), err);
        assertEquals(Main.USAGE, run("models", "--server", "localhost:8000"));
        assertTrue(err.contains("not an http(s) URL"), err);
        assertEquals(Main.USAGE, run("frobnicate", "--server", fake.url()));
    }

    @Test
    void reconstructWritesTheFilesAndAProgressLine() throws IOException {
        Path outDir = tmp.resolve("out");
        assertEquals(0, run("reconstruct", scan().toString(), "--server", fake.url(), "-o", outDir.toString(),
                "--formats", "h5,nii,dcm", "--model", "demo", "--no-undersample"), err);
        assertArrayEquals(FakeService.result("scan.h5", "h5"), Files.readAllBytes(outDir.resolve("scan.h5")));
        assertTrue(Files.exists(outDir.resolve("scan.nii.gz")));
        assertTrue(Files.exists(outDir.resolve("scan_dicom/slice_000.dcm")));
        assertTrue(out.contains(outDir.resolve("scan.h5").toString()), out);
        assertTrue(err.contains("scan.h5: queued"), err);
        assertTrue(err.contains("running 1/3 slices"), err);
        assertTrue(err.contains("done 3/3 slices"), err);
        assertEquals("false", fake.lastUpload.get("undersample").text());
        assertEquals("h5,nii,dcm", fake.lastUpload.get("formats").text());
        assertEquals(1, fake.jobs.size());
    }

    @Test
    void deleteAndQuiet() throws IOException {
        assertEquals(0, run("reconstruct", scan().toString(), "--server=" + fake.url(), "-o", tmp.resolve("o").toString(),
                "--delete", "-q"), err);
        assertEquals("", err);
        assertTrue(fake.jobs.isEmpty());
    }

    @Test
    void tokenFile() throws IOException {
        fake.token = "abc";
        Path token = Files.writeString(tmp.resolve("token"), "abc\n");
        assertEquals(0, run("models", "--server", fake.url(), "--token-file", token.toString()), err);
        assertTrue(out.contains("demo"), out);
        assertTrue(out.contains("4.0x"), out);
        assertEquals(Main.REJECTED, run("models", "--server", fake.url()));
        assertTrue(err.contains("HTTP 401"), err);
        assertTrue(err.contains("missing or wrong bearer token"), err);
        assertTrue(err.contains("--token-file"), err);
        assertEquals(Main.LOCAL, run("models", "--server", fake.url(), "--token-file", tmp.resolve("nope").toString()));
    }

    @Test
    void serviceDetailIsPrinted() throws IOException {
        assertEquals(Main.REJECTED, run("reconstruct", scan().toString(), "--server", fake.url(), "-o",
                tmp.resolve("o").toString(), "--model", "nope"));
        assertTrue(err.contains("unknown model 'nope'; loaded: demo, cine"), err);
        fake.queueFull = true;
        assertEquals(Main.REJECTED, run("reconstruct", scan().toString(), "--server", fake.url(), "-o",
                tmp.resolve("o").toString()));
        assertTrue(err.contains("HTTP 429"), err);
        assertTrue(err.contains("try again later"), err);
    }

    @Test
    void failedJob() throws IOException {
        fake.failWith = "the network ran out of memory";
        assertEquals(Main.FAILED_JOB, run("reconstruct", scan().toString(), "--server", fake.url(), "-o",
                tmp.resolve("o").toString()));
        assertTrue(err.contains("failed: the network ran out of memory"), err);
        assertFalse(Files.exists(tmp.resolve("o/scan.h5")));
    }

    @Test
    void unreachableAndMissingFile() throws IOException {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        assertEquals(Main.UNREACHABLE, run("reconstruct", scan().toString(), "--server", "http://127.0.0.1:" + port,
                "-o", tmp.resolve("o").toString()));
        assertTrue(err.contains("cannot reach the service at http://127.0.0.1:" + port), err);
        assertEquals(Main.LOCAL, run("reconstruct", tmp.resolve("missing.h5").toString(), "--server", fake.url(),
                "-o", tmp.resolve("o").toString()));
        assertTrue(err.contains("no such file"), err);
        assertTrue(fake.requests.isEmpty());
    }

    @Test
    void timeout() throws IOException {
        fake.neverFinish = true;
        assertEquals(Main.TIMEOUT, run("reconstruct", scan().toString(), "--server", fake.url(), "-o",
                tmp.resolve("o").toString(), "--timeout", "0.3"));
        assertTrue(err.contains("not finished after"), err);
    }
}
