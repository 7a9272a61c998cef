package org.gleammri.client.cli;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import org.gleammri.client.Format;
import org.gleammri.client.GleamClient;

/** The command line of {@link Main}, parsed; {@link #client()} builds the client it asks for. */
final class Options {
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

    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }
}
