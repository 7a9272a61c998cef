package org.gleammri.client.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.gleammri.client.Format;
import org.gleammri.client.GleamApiException;
import org.gleammri.client.GleamClient;
import org.gleammri.client.GleamConnectionException;
import org.gleammri.client.GleamException;
import org.gleammri.client.GleamTimeoutException;
import org.gleammri.client.Job;
import org.gleammri.client.JobFailedException;
import org.gleammri.client.ModelInfo;
import org.gleammri.client.ProgressListener;
import org.gleammri.client.ReconOptions;

/**
 * {@code java -jar gleam-client.jar}: reconstruct files with a {@code gleam serve} service, list its
 * models. Exit codes: {@value #OK} done, {@value #FAILED_JOB} the job failed, {@value #USAGE} bad
 * command line, {@value #UNREACHABLE} service unreachable, {@value #REJECTED} the service answered
 * with an error, {@value #TIMEOUT} a timeout ran out, {@value #LOCAL} a local file problem.
 */
public final class Main {
    public static final int OK = 0;
    public static final int FAILED_JOB = 1;
    public static final int USAGE = 2;
    public static final int UNREACHABLE = 3;
    public static final int REJECTED = 4;
    public static final int TIMEOUT = 5;
    public static final int LOCAL = 6;

    static final String HELP = """
            usage: java -jar gleam-client.jar COMMAND [OPTIONS]

            Client of the gleam-mri reconstruction service (gleam serve).

            commands:
              reconstruct FILE --server URL -o OUT [options]
                  upload FILE (fastMRI/ISMRMRD .h5, Siemens .dat, BART .cfl with its .hdr beside it),
                  wait for the reconstruction and write it as gleam recon does: OUT/<stem>.h5
                  (dataset 'reconstruction'), <stem>.nii.gz, <stem>.png, OUT/<stem>_dicom/
                    -o, --out DIR        output folder (created)
                    --model NAME         model to run (needed when the service has several)
                    --formats LIST       comma-separated subset of h5,nii,png,dcm (default h5)
                    --no-undersample     reconstruct fully sampled files from all their k-space
                                         (default: undersample with the model's training mask)
                    --header HDR         the BART .hdr of a .cfl (default: the one beside it)
                    --timeout SECONDS    give up waiting for the job after this long (default: none)
                    --delete             delete the job on the service once downloaded
                    -q, --quiet          no progress line
              models --server URL        list the service's models

            options of every command:
              --server URL               the service, e.g. http://localhost:8000 (default: $GLEAM_SERVER)
              --token-file FILE          bearer token of a service run with --token-file
              --request-timeout SECONDS  how long one request may wait for its answer (default 120)
              -h, --help                 this help

            exit codes: 0 done, 1 the job failed, 2 bad command line, 3 service unreachable,
            4 the service refused the request (its message is printed), 5 timeout, 6 local file error
            """;

    private Main() {}

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Runs the command line {@code args}; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        Options options;
        try {
            options = Options.parse(args);
        } catch (UsageException e) {
            err.println("gleam-client: " + e.getMessage());
            err.println("(java -jar gleam-client.jar --help for usage)");
            return USAGE;
        }
        if (options.help) {
            out.print(HELP);
            return OK;
        }
        try {
            GleamClient client = options.client();
            return switch (options.command) {
                case "models" -> models(client, out);
                case "reconstruct" -> reconstruct(client, options, out, err);
                default -> throw new IllegalStateException(options.command);
            };
        } catch (IllegalArgumentException e) {
            err.println("gleam-client: " + e.getMessage());
            return USAGE;
        } catch (JobFailedException e) {
            err.println("gleam-client: " + e.getMessage());
            return FAILED_JOB;
        } catch (GleamConnectionException e) {
            err.println("gleam-client: " + e.getMessage());
            return UNREACHABLE;
        } catch (GleamTimeoutException e) {
            err.println("gleam-client: timeout: " + e.getMessage());
            return TIMEOUT;
        } catch (GleamApiException e) {
            err.println("gleam-client: the service refused " + e.request() + " (HTTP " + e.status() + "): "
                    + e.detail() + hint(e));
            return REJECTED;
        } catch (GleamException e) {
            err.println("gleam-client: " + e.getMessage());
            return REJECTED;
        } catch (NoSuchFileException e) {
            err.println("gleam-client: no such file: " + e.getFile());
            return LOCAL;
        } catch (IOException e) {
            err.println("gleam-client: " + e.getMessage());
            return LOCAL;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            err.println("gleam-client: interrupted");
            return TIMEOUT;
        }
    }

    private static String hint(GleamApiException e) {
        return switch (e.status()) {
            case 401 -> " (pass the service's token with --token-file)";
            case 429 -> " (the service's queue is full: try again later)";
            default -> "";
        };
    }

    private static int models(GleamClient client, PrintStream out) throws IOException, InterruptedException {
        List<ModelInfo> models = client.models();
        out.printf("%-16s %-5s %-8s %-12s %10s %12s  %s%n", "name", "kind", "model", "strategy", "iterations",
                "acceleration", "device");
        for (ModelInfo m : models) {
            out.printf(Locale.ROOT, "%-16s %-5s %-8s %-12s %10s %12s  %s%n", m.name(), m.kind(), m.model(),
                    m.strategy(), m.iterations() == null ? "-" : m.iterations(),
                    m.acceleration() == null ? "-" : String.format(Locale.ROOT, "%.1fx", m.acceleration()),
                    m.device());
        }
        return OK;
    }

    private static int reconstruct(GleamClient client, Options o, PrintStream out, PrintStream err)
            throws IOException, InterruptedException {
        if (!Files.isRegularFile(o.file)) {
            throw new NoSuchFileException(o.file.toString());
        }
        ReconOptions recon = ReconOptions.defaults().formats(o.formats).undersample(o.undersample);
        if (o.model != null) {
            recon = recon.model(o.model);
        }
        if (o.header != null) {
            recon = recon.header(o.header);
        }
        ProgressLine line = new ProgressLine(err, o.quiet);
        List<Path> written;
        String[] jobId = new String[1];
        ProgressListener listener = job -> {
            jobId[0] = job.id();
            line.update(job);
        };
        try {
            written = client.reconstruct(o.file, recon, o.out, listener);
        } finally {
            line.end();
        }
        for (Path path : written) {
            out.println(path);
        }
        if (o.delete && jobId[0] != null) {
            client.delete(jobId[0]);
        }
        return OK;
    }

    /** The progress line on stderr: rewritten in place on a terminal, one line per change otherwise. */
    static final class ProgressLine {
        private final PrintStream err;
        private final boolean quiet;
        private final boolean terminal = System.console() != null;
        private final long start = System.nanoTime();
        private boolean open;

        ProgressLine(PrintStream err, boolean quiet) {
            this.err = err;
            this.quiet = quiet;
        }

        void update(Job job) {
            if (quiet) {
                return;
            }
            Job.Progress p = job.progressOrZero();
            String slices = p.total() > 0 ? String.format(Locale.ROOT, " %d/%d slices", p.done(), p.total()) : "";
            String text = String.format(Locale.ROOT, "job %s %s: %s%s (%.1f s)", shortId(job.id()),
                    job.fileName(), job.state(), slices, (System.nanoTime() - start) / 1e9);
            if (terminal) {
                err.print("\r\033[K" + text);
                open = true;
            } else {
                err.println(text);
            }
            err.flush();
        }

        void end() {
            if (open) {
                err.println();
                open = false;
            }
        }

        private static String shortId(String id) {
            return id == null ? "?" : id.length() > 8 ? id.substring(0, 8) : id;
        }
    }

    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    /** The parsed command line. */
    static final class Options {
        String command;
        boolean help;
        String server = System.getenv("GLEAM_SERVER");
        Path tokenFile;
        Duration requestTimeout;
        Path file;
        Path out;
        String model;
        Set<Format> formats = EnumSet.of(Format.H5);
        boolean undersample = true;
        Path header;
        Duration timeout;
        boolean delete;
        boolean quiet;

        static Options parse(String[] args) throws UsageException {
            Options o = new Options();
            List<String> positional = new ArrayList<>();
            for (int i = 0; i < args.length; i++) {
                String arg = args[i];
                String value = null;
                int eq = arg.indexOf('=');
                if (arg.startsWith("--") && eq > 0) {
                    value = arg.substring(eq + 1);
                    arg = arg.substring(0, eq);
                }
                switch (arg) {
                    case "-h", "--help", "help" -> o.help = true;
                    case "--no-undersample" -> o.undersample = false;
                    case "--delete" -> o.delete = true;
                    case "-q", "--quiet" -> o.quiet = true;
                    case "--server", "-o", "--out", "--model", "--formats", "--token-file", "--header",
                            "--timeout", "--request-timeout" -> {
                        if (value == null) {
                            if (i + 1 >= args.length) {
                                throw new UsageException(arg + " needs a value");
                            }
                            value = args[++i];
                        }
                        o.set(arg, value);
                    }
                    default -> {
                        if (arg.startsWith("-") && arg.length() > 1) {
                            throw new UsageException("unknown option " + arg);
                        }
                        positional.add(arg);
                    }
                }
            }
            if (o.help) {
                return o;
            }
            if (positional.isEmpty()) {
                throw new UsageException("a command is needed: reconstruct or models");
            }
            o.command = positional.get(0);
            switch (o.command) {
                case "reconstruct" -> {
                    if (positional.size() != 2) {
                        throw new UsageException("reconstruct takes one FILE");
                    }
                    o.file = Path.of(positional.get(1));
                    if (o.out == null) {
                        throw new UsageException("reconstruct needs -o OUT (the output folder)");
                    }
                }
                case "models" -> {
                    if (positional.size() != 1) {
                        throw new UsageException("models takes no arguments");
                    }
                }
                default -> throw new UsageException("unknown command '" + o.command + "' (reconstruct, models)");
            }
            if (o.server == null || o.server.isBlank()) {
                throw new UsageException("--server URL is needed (or $GLEAM_SERVER)");
            }
            return o;
        }

        private void set(String name, String value) throws UsageException {
            switch (name) {
                case "--server" -> server = value;
                case "-o", "--out" -> out = Path.of(value);
                case "--model" -> model = value;
                case "--token-file" -> tokenFile = Path.of(value);
                case "--header" -> header = Path.of(value);
                case "--timeout" -> timeout = seconds(name, value);
                case "--request-timeout" -> requestTimeout = seconds(name, value);
                case "--formats" -> {
                    Set<Format> wanted = EnumSet.noneOf(Format.class);
                    for (String part : value.split(",")) {
                        if (part.isBlank()) {
                            continue;
                        }
                        try {
                            wanted.add(Format.parse(part));
                        } catch (IllegalArgumentException e) {
                            throw new UsageException(e.getMessage());
                        }
                    }
                    if (wanted.isEmpty()) {
                        throw new UsageException("--formats needs at least one of h5,nii,png,dcm");
                    }
                    formats = wanted;
                }
                default -> throw new IllegalStateException(name);
            }
        }

        private static Duration seconds(String name, String value) throws UsageException {
            try {
                double s = Double.parseDouble(value);
                if (!(s > 0) || Double.isInfinite(s)) {
                    throw new NumberFormatException();
                }
                return Duration.ofNanos((long) (s * 1e9));
            } catch (NumberFormatException e) {
                throw new UsageException(name + " needs a positive number of seconds, not '" + value + "'");
            }
        }

        GleamClient client() throws IOException {
            GleamClient.Builder b = GleamClient.builder(server);
            if (tokenFile != null) {
                b.tokenFile(tokenFile);
            }
            if (requestTimeout != null) {
                b.requestTimeout(requestTimeout);
            }
            if (timeout != null) {
                b.awaitTimeout(timeout);
            }
            return b.build();
        }
    }
}
