package org.gleammri.engine.cli;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.gleammri.engine.GleamEngine;
import org.gleammri.engine.GleamEngineException;
import org.gleammri.engine.GleamInputException;

/**
 * {@code java -jar gleam.jar bench MODEL.onnx C H W [N]}: seconds per slice of the engine on one
 * random slice of {@code C} coils and {@code H x W} (a 4x line mask with 8 % of the lines in the
 * centre, unit coil maps, as {@code benchmarks/onnx_speed.py} feeds the Python engines). One
 * warm-up run, then {@code N} timed runs (default 5); prints one JSON line with their median.
 */
final class Bench {
    private Bench() {
    }

    static int run(List<String> args, PrintStream out) throws Main.UsageException, GleamInputException, GleamEngineException {
        if (args.size() < 4 || args.size() > 5) {
            throw new Main.UsageException("bench takes MODEL.onnx C H W [N]");
        }
        int coils = positive(args.get(1));
        int height = positive(args.get(2));
        int width = positive(args.get(3));
        int runs = args.size() == 5 ? positive(args.get(4)) : 5;
        float[] mask = new float[width];
        for (int x = 0; x < width; x += 4) {
            mask[x] = 1f;
        }
        int centre = Math.max(2, Math.round(0.08f * width));
        Arrays.fill(mask, width / 2 - centre / 2, width / 2 - centre / 2 + centre, 1f);
        float[] kspace = new float[2 * coils * height * width];
        float[] maps = new float[kspace.length];
        Random random = new Random(0);
        float unit = (float) (1.0 / Math.sqrt(coils));
        for (int i = 0; i < kspace.length; i += 2) {
            float sampled = mask[(i / 2) % width];
            kspace[i] = sampled * (float) random.nextGaussian();
            kspace[i + 1] = sampled * (float) random.nextGaussian();
            maps[i] = unit;
        }
        double[] seconds = new double[runs];
        try (GleamEngine engine = GleamEngine.load(Path.of(args.get(0)))) {
            engine.reconstructSlice(kspace, mask, maps, coils, height, width);
            for (int r = 0; r < runs; r++) {
                long start = System.nanoTime();
                engine.reconstructSlice(kspace, mask, maps, coils, height, width);
                seconds[r] = (System.nanoTime() - start) / 1e9;
            }
        }
        Arrays.sort(seconds);
        double median = runs % 2 == 1 ? seconds[runs / 2] : (seconds[runs / 2 - 1] + seconds[runs / 2]) / 2;
        out.println(String.format(Locale.ROOT, "{\"median_seconds\": %.6f, \"runs\": %d}", median, runs));
        return Main.OK;
    }

    private static int positive(String value) throws Main.UsageException {
        try {
            int n = Integer.parseInt(value);
            if (n > 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new Main.UsageException("bench: expected a positive integer, got '" + value + "'");
    }
}
