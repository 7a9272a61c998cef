package org.gleammri.client.cli;

import java.io.PrintStream;
import java.util.Locale;
import org.gleammri.client.Job;

/** The progress line on stderr: rewritten in place on a terminal, one line per change otherwise. */
final class ProgressLine {
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
