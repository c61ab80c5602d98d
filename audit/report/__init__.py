"""The audit's outputs: the versioned report.json model, the gate, report.html and junit.xml."""
