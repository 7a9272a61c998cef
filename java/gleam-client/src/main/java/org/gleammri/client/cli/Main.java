package org.gleammri.client.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import org.gleammri.client.GleamApiException;
import org.gleammri.client.GleamClient;
import org.gleammri.client.GleamConnectionException;
import org.gleammri.client.GleamException;
import org.gleammri.client.GleamTimeoutException;
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

            Reconstructs MRI raw data with a gleam-mri reconstruction service (gleam serve),
            from any machine that can reach it over HTTP.

            commands:
              reconstruct FILE --server URL -o OUT [options]
                  Uploads FILE (fastMRI or ISMRMRD .h5, Siemens twix .dat, or BART .cfl with its
                  .hdr beside it), waits for the job (a progress line on stderr) and writes the
                  result into the folder OUT as gleam recon would, one file per format asked:
                    h5   OUT/<stem>.h5 (dataset 'reconstruction', float32)
                    nii  OUT/<stem>.nii.gz       png  OUT/<stem>.png
                    dcm  OUT/<stem>_dicom/ (the DICOM series, one file per slice or frame)
                  where <stem> is FILE's name without its suffix; the paths written go to stdout.
                    -o, --out DIR        output folder (created when missing)
                    --model NAME         model to run (needed when the service has several;
                                         see the models command)
                    --formats LIST       comma-separated, from h5,nii,png,dcm (default h5)
                    --no-undersample     reconstruct fully sampled files from all their k-space
                                         (default: undersample with the model's training mask)
                    --header HDR         the BART .hdr of a .cfl (default: the one beside it)
                    --timeout SECONDS    give up waiting for the job after this long (default: never)
                    --delete             delete the job and its files on the service afterwards
                    -q, --quiet          no progress line
              models --server URL
                  Lists the models the service has loaded (name, kind, network, acceleration).

            options of every command:
              --server URL               the service, e.g. http://localhost:8000 (default: $GLEAM_SERVER)
              --token-file FILE          file holding the bearer token, for a service started
                                         with --token-file
              --request-timeout SECONDS  how long one request (an upload included) may wait for
                                         its answer (default 120)
              -h, --help                 this help

            examples:
              java -jar gleam-client.jar models --server http://localhost:8000
              java -jar gleam-client.jar reconstruct scan.h5 --server http://localhost:8000 \\
                  -o out --model demo --formats h5,nii --token-file token.txt

            exit codes: 0 done, 1 the job failed (the service's message is printed), 2 bad command
            line, 3 service unreachable, 4 the service refused the request (its message is
            printed), 5 timeout, 6 local file error
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
        } catch (Options.UsageException e) {
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
}
