package org.gleammri.engine.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MainTest {
    @TempDir
    Path tmp;

    private record Outcome(int code, String out, String err) {
    }

    private static Outcome run(Object... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        String[] strings = new String[args.length];
        for (int i = 0; i < args.length; i++) {
            strings[i] = String.valueOf(args[i]);
        }
        int code = Main.run(strings, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Outcome(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    private static void noStackTrace(Outcome o) {
        assertFalse(o.err().contains("\tat "), o.err());
        assertFalse(o.err().contains("Exception"), o.err());
    }

    @Test
    void helpAndVersion() {
        Outcome help = run("--help");
        assertEquals(0, help.code());
        assertTrue(help.out().contains("recon MODEL.onnx FILE.h5"));
        assertTrue(help.out().contains("exit codes"));
        assertEquals(0, run("recon", "--help").code());
        Outcome version = run("--version");
        assertEquals(0, version.code());
        assertTrue(version.out().startsWith("gleam-engine "));
    }

    @Test
    void usageErrorsExitTwo() {
        for (Object[] args : new Object[][] {
            {}, {"bogus"}, {"recon"}, {"recon", "m.onnx", "f.h5"}, {"recon", "m.onnx", "-o", "out"},
            {"recon", "m.onnx", "f.h5", "-o"}, {"recon", "m.onnx", "f.h5", "-o", "out", "--wat"},
            {"recon", "m.onnx", "f.h5", "-o", "out", "--threads", "zero"},
            {"recon", "m.onnx", "f.h5", "-o", "out", "--formats", "h5,tiff"},
            {"bench", "m.onnx", "4", "8"}, {"bench", "m.onnx", "4", "8", "x"},
            {"bench", "m.onnx", "4", "8", "8", "0"},
        }) {
            Outcome o = run(args);
            assertEquals(2, o.code(), String.join(" ", java.util.Arrays.stream(args).map(String::valueOf).toList()));
            assertTrue(o.err().startsWith("gleam: error: "), o.err());
            noStackTrace(o);
        }
    }

    @Test
    void dicomIsRefusedWithTheReason() {
        Outcome o = run("recon", "m.onnx", "f.h5", "-o", "out", "--formats", "h5,dcm");
        assertEquals(2, o.code());
        assertTrue(o.err().contains("DICOM is not available"), o.err());
    }

    @Test
    void missingOrCorruptModelsExitTwoNamingTheFileAndWriteNothing() throws IOException {
        Path data = tmp.resolve("scan.h5");
        Files.writeString(data, "whatever");
        Path out = tmp.resolve("out");
        Path absent = tmp.resolve("absent.onnx");
        Outcome o = run("recon", absent, data, "-o", out);
        assertEquals(2, o.code());
        assertEquals("gleam: error: " + absent + ": no such ONNX file", o.err().strip());
        Path corrupt = tmp.resolve("corrupt.onnx");
        Files.write(corrupt, new byte[] {8, 7, 0x12, 3, 'a', 'b'});
        o = run("recon", corrupt, data, "-o", out);
        assertEquals(2, o.code());
        assertTrue(o.err().startsWith("gleam: error: " + corrupt + ": not a readable ONNX model"), o.err());
        assertEquals(1, o.err().strip().lines().count(), o.err());
        noStackTrace(o);
        assertFalse(Files.exists(out));
    }
}
