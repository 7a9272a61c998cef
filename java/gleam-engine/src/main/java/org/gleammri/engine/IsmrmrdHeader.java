package org.gleammri.engine;

import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Path;
import java.util.Optional;
import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.xml.sax.InputSource;
import org.xml.sax.SAXException;

/**
 * The fields of an ISMRMRD XML header that the engine uses, read as gleam-mri's
 * {@code parse_ismrmrd_header} reads them (namespace ignored, missing fields empty):
 * {@code encoding/encodedSpace} and {@code encoding/reconSpace}, each a matrix size (x = H,
 * y = W, z) and a field of view in mm.
 */
public record IsmrmrdHeader(
        Optional<int[]> encodingSize,
        Optional<int[]> reconSize,
        Optional<double[]> encodingFovMm,
        Optional<double[]> reconFovMm) {

    /** A header with no fields (a file without {@code ismrmrd_header}). */
    public static IsmrmrdHeader empty() {
        return new IsmrmrdHeader(Optional.empty(), Optional.empty(), Optional.empty(), Optional.empty());
    }

    /**
     * Parses {@code xml}; {@code source} names the file in errors.
     *
     * @throws GleamInputException when the XML is not well-formed, its root is not
     *     {@code ismrmrdHeader} or a field is not a number
     */
    public static IsmrmrdHeader parse(String xml, Path source) throws GleamInputException {
        Element root;
        try {
            DocumentBuilderFactory factory = DocumentBuilderFactory.newInstance();
            factory.setNamespaceAware(true);
            factory.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
            factory.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
            factory.setExpandEntityReferences(false);
            DocumentBuilder builder = factory.newDocumentBuilder();
            builder.setErrorHandler(null);
            root = builder.parse(new InputSource(new StringReader(xml.strip()))).getDocumentElement();
        } catch (SAXException | IOException | ParserConfigurationException e) {
            throw new GleamInputException(source, "ISMRMRD header is not well-formed XML: "
                    + oneLine(e.getMessage()), e);
        }
        if (!"ismrmrdHeader".equals(local(root))) {
            throw new GleamInputException(source, "ISMRMRD header root is <" + local(root)
                    + ">, expected <ismrmrdHeader>");
        }
        return new IsmrmrdHeader(
                ints(root, source, "encoding", "encodedSpace", "matrixSize"),
                ints(root, source, "encoding", "reconSpace", "matrixSize"),
                doubles(root, source, "encoding", "encodedSpace", "fieldOfView_mm"),
                doubles(root, source, "encoding", "reconSpace", "fieldOfView_mm"));
    }

    /**
     * Voxel size {@code (dx, dy, dz)} in mm as gleam-mri's {@code voxel_size_from_header}: dx
     * along W ({@code fov_y / n_y}), dy along H ({@code fov_x / n_x}), dz between slices; from
     * the recon space, else the encoded space, else 1 mm.
     */
    public double[] voxelSizeMm() {
        double[] fromRecon = voxel(reconFovMm, reconSize);
        if (fromRecon != null) {
            return fromRecon;
        }
        double[] fromEncoding = voxel(encodingFovMm, encodingSize);
        return fromEncoding != null ? fromEncoding : new double[] {1.0, 1.0, 1.0};
    }

    private static double[] voxel(Optional<double[]> fov, Optional<int[]> size) {
        if (fov.isEmpty() || size.isEmpty()) {
            return null;
        }
        double[] f = fov.get();
        int[] n = size.get();
        for (int i = 0; i < 3; i++) {
            if (!(f[i] > 0) || n[i] <= 0) {
                return null;
            }
        }
        return new double[] {f[1] / n[1], f[0] / n[0], f[2] / n[2]};
    }

    private static String local(Node node) {
        String name = node.getLocalName() != null ? node.getLocalName() : node.getNodeName();
        int colon = name.indexOf(':');
        return colon >= 0 ? name.substring(colon + 1) : name;
    }

    private static Element child(Element parent, String name) {
        for (Node c = parent.getFirstChild(); c != null; c = c.getNextSibling()) {
            if (c instanceof Element e && name.equals(local(e))) {
                return e;
            }
        }
        return null;
    }

    private static String[] texts(Element root, String... path) {
        Element node = root;
        for (String name : path) {
            node = child(node, name);
            if (node == null) {
                return null;
            }
        }
        String[] out = new String[3];
        String[] axes = {"x", "y", "z"};
        for (int i = 0; i < 3; i++) {
            Element axis = child(node, axes[i]);
            if (axis == null || axis.getTextContent().isBlank()) {
                return null;
            }
            out[i] = axis.getTextContent().strip();
        }
        return out;
    }

    private static Optional<int[]> ints(Element root, Path source, String... path) throws GleamInputException {
        String[] t = texts(root, path);
        if (t == null) {
            return Optional.empty();
        }
        int[] out = new int[3];
        for (int i = 0; i < 3; i++) {
            try {
                out[i] = Integer.parseInt(t[i]);
            } catch (NumberFormatException e) {
                throw new GleamInputException(source, "ISMRMRD header field " + String.join("/", path)
                        + " is not an integer: '" + t[i] + "'");
            }
        }
        return Optional.of(out);
    }

    private static Optional<double[]> doubles(Element root, Path source, String... path) throws GleamInputException {
        String[] t = texts(root, path);
        if (t == null) {
            return Optional.empty();
        }
        double[] out = new double[3];
        for (int i = 0; i < 3; i++) {
            try {
                out[i] = Double.parseDouble(t[i]);
            } catch (NumberFormatException e) {
                throw new GleamInputException(source, "ISMRMRD header field " + String.join("/", path)
                        + " is not a number: '" + t[i] + "'");
            }
        }
        return Optional.of(out);
    }

    static String oneLine(String message) {
        return message == null ? "" : message.replaceAll("\\s+", " ").strip();
    }
}
