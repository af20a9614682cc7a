/* Placeholder until the workloads land (issue 3). */
int main(void) { return 0; }
