"""Credit-risk loan applications: will an applicant default? (The first shipped use case.)"""
