package org.gleammri.engine.cli;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.gleammri.engine.Format;
import org.gleammri.engine.GleamEngine;
import org.gleammri.engine.GleamEngineException;
import org.gleammri.engine.GleamInputException;
import org.gleammri.engine.Options;

/**
 * {@code java -jar gleam.jar recon MODEL.onnx FILE.h5 [FILE.h5 ...] -o OUT [--formats h5,nii]
 * [--threads N] [--quiet]}: reconstructs each file with a network written by {@code gleam export},
 * printing a line per slice and the files written.
 *
 * <p>Exit codes: 0 success; 2 bad input or usage (a one-line message naming the file and the
 * problem on standard error); 1 anything else (ONNX Runtime failed, an output could not be
 * written). Never a stack trace, unless {@code GLEAM_DEBUG=1}.
 */
public final class Main {
    /** Success. */
    public static final int OK = 0;
    /** ONNX Runtime or the file system failed. */
    public static final int FAILED = 1;
    /** Bad input or usage. */
    public static final int BAD_INPUT = 2;

    static final String VERSION = "0.1.0";

    static final String USAGE = """
            usage: java -jar gleam.jar recon MODEL.onnx FILE.h5 [FILE.h5 ...] -o OUT [--formats h5,nii]
                                             [--threads N] [--quiet]
                   java -jar gleam.jar info MODEL.onnx
                   java -jar gleam.jar bench MODEL.onnx C H W [N]
                   java -jar gleam.jar --help | --version
            """;

    static final String HELP = USAGE + """

            Reconstruct fastMRI-layout HDF5 files with a network exported by `gleam export CKPT -o MODEL.onnx`
            (ONNX Runtime, CPU). Each FILE is read slice by slice: its k-space, its mask (none: fully sampled,
            all of its k-space used, as `gleam recon --no-undersample`) and its coil maps (required); the
            magnitude images, cropped as gleam recon crops them (to reconstruction_rss, else the header's recon
            size), are written to OUT/<name>.h5 (dataset 'reconstruction', float32 (slices, H, W)) and
            OUT/<name>.nii.gz (NIfTI-1). Only 2D networks and files; no DICOM or PNG output (use gleam recon).

            commands:
              recon MODEL FILE...   reconstruct FILE(s) with MODEL
              info MODEL            print MODEL's metadata
              bench MODEL C H W [N] median seconds per slice of N runs on a random C-coil H x W slice

            options of recon:
              -o, --out OUT         output folder (created if missing)
              --formats LIST        comma-separated: h5, nii (default: h5,nii)
              --threads N           ONNX Runtime threads (default: its own choice)
              -q, --quiet           no progress lines (the files written are still printed)
              -h, --help            this help

            exit codes: 0 success, 2 bad input (unreadable or truncated file, missing dataset, wrong shapes,
            kind mismatch, missing or corrupt model) or usage, 1 other failures.
            """;

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Runs the command line with {@code args}; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        try {
            return dispatch(args, out, err);
        } catch (UsageException e) {
            err.println("gleam: error: " + e.getMessage());
            err.print(USAGE);
            return BAD_INPUT;
        } catch (GleamInputException e) {
            err.println("gleam: error: " + e.getMessage());
            debug(e, err);
            return BAD_INPUT;
        } catch (GleamEngineException e) {
            err.println("gleam: error: " + e.getMessage());
            debug(e, err);
            return FAILED;
        } catch (java.io.IOException e) {
            err.println("gleam: error: " + oneLine(e));
            debug(e, err);
            return FAILED;
        } catch (OutOfMemoryError e) {
            err.println("gleam: error: out of memory (" + e.getMessage() + "); give Java more with -Xmx");
            return FAILED;
        } catch (RuntimeException | Error e) {
            err.println("gleam: error: " + oneLine(e));
            debug(e, err);
            return FAILED;
        }
    }

    private static int dispatch(String[] args, PrintStream out, PrintStream err)
            throws UsageException, GleamInputException, GleamEngineException, java.io.IOException {
        if (args.length == 0) {
            throw new UsageException("a command is required (recon, info, bench)");
        }
        switch (args[0]) {
            case "-h", "--help", "help" -> {
                out.print(HELP);
                return OK;
            }
            case "--version" -> {
                out.println("gleam-engine " + VERSION);
                return OK;
            }
            case "recon" -> {
                return recon(List.of(args).subList(1, args.length), out, err);
            }
            case "info" -> {
                return info(List.of(args).subList(1, args.length), out);
            }
            case "bench" -> {
                return Bench.run(List.of(args).subList(1, args.length), out);
            }
            default -> throw new UsageException("unknown command '" + args[0] + "' (recon, info, bench)");
        }
    }

    private static int info(List<String> args, PrintStream out) throws UsageException, GleamInputException {
        if (args.contains("-h") || args.contains("--help")) {
            out.print(HELP);
            return OK;
        }
        if (args.size() != 1) {
            throw new UsageException("info takes one MODEL.onnx");
        }
        try (GleamEngine engine = GleamEngine.load(Path.of(args.get(0)))) {
            engine.metadata().entrySet().stream()
                    .filter(e -> !"config".equals(e.getKey()))
                    .sorted(java.util.Map.Entry.comparingByKey())
                    .forEach(e -> out.println(e.getKey() + ": " + e.getValue()));
        }
        return OK;
    }

    private static int recon(List<String> args, PrintStream out, PrintStream err)
            throws UsageException, GleamInputException, GleamEngineException, java.io.IOException {
        List<String> positional = new ArrayList<>();
        Path outDir = null;
        Set<Format> formats = Options.defaults().formats();
        int threads = 0;
        boolean quiet = false;
        for (int i = 0; i < args.size(); i++) {
            String arg = args.get(i);
            String value = null;
            int eq = arg.indexOf('=');
            if (arg.startsWith("--") && eq > 0) {
                value = arg.substring(eq + 1);
                arg = arg.substring(0, eq);
            }
            switch (arg) {
                case "-h", "--help" -> {
                    out.print(HELP);
                    return OK;
                }
                case "-o", "--out" -> {
                    outDir = Path.of(value != null ? value : next(args, ++i, arg));
                }
                case "--formats" -> formats = Format.parseList(value != null ? value : next(args, ++i, arg));
                case "--threads" -> {
                    String n = value != null ? value : next(args, ++i, arg);
                    try {
                        threads = Integer.parseInt(n);
                    } catch (NumberFormatException e) {
                        threads = -1;
                    }
                    if (threads < 1) {
                        throw new UsageException("--threads takes a positive integer, got '" + n + "'");
                    }
                }
                case "-q", "--quiet" -> quiet = true;
                default -> {
                    if (arg.startsWith("-") && arg.length() > 1) {
                        throw new UsageException("unknown option '" + arg + "'");
                    }
                    positional.add(arg);
                }
            }
        }
        if (positional.size() < 2) {
            throw new UsageException("recon needs MODEL.onnx and at least one FILE.h5");
        }
        if (outDir == null) {
            throw new UsageException("recon needs -o OUT, the output folder");
        }
        if (formats.isEmpty()) {
            throw new UsageException("--formats names no format");
        }
        boolean verbose = !quiet;
        Options options = Options.defaults().withFormats(formats).withProgress((file, done, total) -> {
            if (verbose && done > 0) {
                out.printf(Locale.ROOT, "%s: slice %d/%d%n", file, done, total);
                out.flush();
            }
        });
        try (GleamEngine engine = GleamEngine.load(Path.of(positional.get(0)), threads)) {
            for (String file : positional.subList(1, positional.size())) {
                for (Path written : engine.reconstruct(Path.of(file), outDir, options)) {
                    out.println(written);
                }
            }
        }
        return OK;
    }

    private static String next(List<String> args, int i, String option) throws UsageException {
        if (i >= args.size()) {
            throw new UsageException(option + " needs a value");
        }
        return args.get(i);
    }

    private static String oneLine(Throwable e) {
        String message = e.getMessage() == null ? "" : e.getMessage().replaceAll("\\s+", " ").strip();
        return message.isEmpty() ? e.getClass().getSimpleName() : message;
    }

    private static void debug(Throwable e, PrintStream err) {
        if ("1".equals(System.getenv("GLEAM_DEBUG"))) {
            e.printStackTrace(err);
        }
    }

    /** A command line the program does not understand. */
    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }
}
